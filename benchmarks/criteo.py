"""A Criteo-shaped DeepFM through the job against one plain PyTorch process, in the same run.

The data is generated here (no downloads): 26 categorical string fields with power-law id
frequencies (about 0.9M distinct ids over the fields at the default size), 13 numeric columns,
and 0/1 labels from a hidden logistic model, written as one parquet file. The model: DeepFM,
embedding dim 16, tower 256-128-1, Adagrad on the rows, Adam on the dense part. The job runs
2 workers × 512 (sync, then async) on 2 shards, read as a user reads it (samples per second
over the workers' whole loop); the plain loop trains the same model with
``nn.Embedding(sparse=True)`` + ``torch.optim.Adagrad`` on batches of 1,024, 2 threads.

    python benchmarks/criteo.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sparse import plain_loop, run  # noqa: E402  (the same loops as the sparse benchmark)

from ps.jobs.runner import ray_session  # noqa: E402

FIELDS, NUMERIC, WIDTH = 26, 13, 16
TOWER = [
    {"type": "dense", "units": 256, "activation": "relu"},
    {"type": "dense", "units": 128, "activation": "relu"},
    {"type": "dense", "units": 1},
]


def write_data(path: Path, rows: int, ids_per_field: int) -> int:
    """A parquet file of Criteo's shape; returns its distinct ids over all fields."""
    rng = np.random.default_rng(0)
    columns, logit, distinct = {}, np.zeros(rows), 0
    for f in range(FIELDS):
        ids = (rng.zipf(1.2, rows) - 1) % ids_per_field
        distinct += len(np.unique(ids))
        weight = rng.normal(0, 0.3, ids_per_field)
        logit += weight[ids]
        columns[f"C{f + 1}"] = pa.array([f"{f}-{i:x}" for i in ids.tolist()])
    for n in range(NUMERIC):
        x = rng.lognormal(0, 1, rows)
        logit += 0.1 * np.log1p(x) * (1 if n % 2 else -1)
        columns[f"I{n + 1}"] = pa.array(x)
    columns["label"] = pa.array((rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64))
    pq.write_table(pa.table(columns), path)
    return distinct


def spec(source: Path, mode: str, samples: int) -> dict:
    return {
        "seed": 0,
        "data": {
            "source": str(source),
            "target": "label",
            "categorical": [f"C{f + 1}" for f in range(FIELDS)],
            "validation_split": 0.05,
            "test_split": 0.05,
        },
        "model": {
            "type": "deepfm",
            "embedding": {"dim": WIDTH, "buckets": 2**24},
            "layers": TOWER,
            "loss": "bce",
        },
        "optimizer": {"name": "adam", "lr": 1e-3},
        "sparse_optimizer": {"name": "adagrad", "lr": 0.05},
        "training": {
            "workers": 2,
            "mode": mode,
            "batch_size": 512,
            "epochs": 1,
            "eval_every_steps": 10**6,
        },
        "ps": {"shards": 2},
        "checkpoint": {"every_steps": 10**6},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100K rows instead of 400K")
    args = parser.parse_args()
    rows, ids_per_field = (100_000, 20_000) if args.quick else (400_000, 80_000)
    print(f"# Criteo-shaped DeepFM — {date.today()} — {platform.machine()}\n")
    with ray_session(), TemporaryDirectory() as tmp:
        source = Path(tmp) / "clicks.parquet"
        distinct = write_data(source, rows, ids_per_field)
        shape = f"{FIELDS} string fields ({distinct:,} distinct ids), {NUMERIC} numeric"
        print(f"{rows:,} rows, {shape}; DeepFM dim 16, tower 256-128-1\n")
        base, _ = plain_loop(spec(source, "sync", rows), 1024, 2)
        print("| run | samples/s | vs plain loop | target |")
        print("|---|---:|---:|---:|")
        print(f"| plain loop (batch 1024, 2 threads) | {base:,.0f} | 1.00× | — |")
        for mode in ("sync", "async"):
            _, rate = run(spec(source, mode, rows), Path(tmp) / mode)
            print(f"| job, 2 workers × 512, {mode} | {rate:,.0f} | {rate / base:.2f}× | ≥ 1.0× |")


if __name__ == "__main__":
    main()
