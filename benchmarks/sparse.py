"""Sparse embedding tables: cost per step, throughput, memory and quality, each against a baseline
measured in the same run.

- **table size**: a shard's row work for one step (read the batch's rows, apply their
  gradients with Adagrad) with 10M rows × 16 in the table against 100K rows, and one pass over
  the 10M-row table (what a dense push would at least cost);
- **throughput**: a DeepFM job on synthetic-ctr with 2 workers against a plain PyTorch loop
  (``nn.Embedding(sparse=True)`` + ``torch.optim.Adagrad``, ``Adam`` for the dense part) on the
  same 2 cores, and against the same model with a dense ``nn.Embedding`` trained by the job
  (every row pushed and pulled each step — the path without sparse tables);
- **memory**: a table of 50M rows × 16 configured, 1M rows touched: what the shard holds;
- **quality**: test AUC of logistic regression, FM and DeepFM jobs against the same models in
  the plain loop; FTRL with L1 against L2 alone (zero rows and AUC);
- **lifecycle**: an FM job under a row budget of half the rows it would create (``lfu``,
  ``lru``) and with admission after two sightings, against the unbounded table.

    python benchmarks/sparse.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch
from rowstore import step_ms  # the same step as the row-store benchmark
from sklearn.metrics import roc_auc_score

from ps.jobs.runner import ray_session
from ps.optim.rows import build_row_rule
from ps.protocol.messages import TableConfig
from ps.server.sparse import SparseTable
from ps.spec import parse_spec
from workers.data import load_dataset
from workers.models import build_model, load_model
from workers.sparse import LocalRows

HERE = Path(__file__).resolve().parent
WIDTH = 16
TOWER = [{"type": "dense", "units": 64, "activation": "relu"}, {"type": "dense", "units": 1}]


# -- table size and memory (one shard's tables, in this process) --------------------------------
def filled_table(rows: int, num_rows: int = 10**9) -> SparseTable:
    table = SparseTable(
        TableConfig(0, "t", num_rows, WIDTH), build_row_rule({"name": "adagrad"}), seed=0
    )
    for lo in range(0, rows, 1 << 20):
        keys = np.arange(lo, min(rows, lo + (1 << 20)), dtype=np.int64) * 7919
        table.apply(keys, np.full((len(keys), WIDTH), 1e-3, np.float32))
    return table


def table_size(batch_keys: int, big: int) -> list[str]:
    small = filled_table(100_000)
    small_ms = step_ms(small, 100_000, batch_keys=batch_keys)
    del small
    large = filled_table(big)
    large_ms = step_ms(large, big, batch_keys=batch_keys)
    t0 = time.perf_counter()
    large.rows.all_rows()
    one_pass = (time.perf_counter() - t0) * 1e3
    moved = batch_keys * (8 + 2 * WIDTH * 4)
    return [
        f"rows touched per step: {batch_keys:,} (keys + rows pulled and pushed: {moved / 2**20:.1f} "
        "MiB, for either table)\n",
        "| table | step (read + apply) | vs 100K rows | target |",
        "|---|---:|---:|---:|",
        f"| 100K × {WIDTH} | {small_ms:.2f} ms | 1.00× | — |",
        f"| {big / 1e6:g}M × {WIDTH} | {large_ms:.2f} ms | {large_ms / small_ms:.2f}× | 0.85–1.15× |",
        f"| one pass over the {big / 1e6:g}M-row table (a copy) | {one_pass:.1f} ms | "
        f"{one_pass / small_ms:.0f}× | step ≪ this |",
    ]


def memory(configured: int, touched: int) -> list[str]:
    table = filled_table(touched, num_rows=configured)
    dense = configured * WIDTH * 4 * (1 + len(table.rule.state))
    return [
        "| table | shard holds | the configured table with state | ratio |",
        "|---|---:|---:|---:|",
        f"| {configured / 1e6:g}M × {WIDTH} configured, {touched / 1e6:g}M touched | "
        f"{table.nbytes / 2**20:,.0f} MiB | {dense / 2**30:,.1f} GiB | "
        f"{table.nbytes / dense:.3f} |",
    ]


# -- jobs ----------------------------------------------------------------------------------------
def ctr_job(kind: str, samples: int, epochs: int, n_ids: int = 300, batch: int = 256) -> dict:
    model = {"type": kind, "embedding": {"dim": WIDTH, "buckets": 2**20}, "loss": "bce"}
    if kind == "deepfm":
        model["layers"] = TOWER
    spec = {
        "seed": 0,
        "data": {
            "source": "synthetic-ctr", "n_samples": samples, "n_fields": 8, "n_ids": n_ids,
            "validation_split": 0.1, "test_split": 0.2,
        },
        "model": model,
        "optimizer": {"name": "adam", "lr": 1e-3},
        "sparse_optimizer": {"name": "adagrad", "lr": 0.05},
        "training": {"workers": 2, "mode": "sync", "batch_size": batch, "epochs": epochs,
                     "eval_every_steps": 10**6},
        "ps": {"shards": 2},
        "checkpoint": {"every_steps": 10**6},
    }  # fmt: skip
    return spec


def run(spec: dict, out: Path):
    from ps.jobs.runner import run_job

    result = run_job(parse_spec(spec), out)
    loop = max(w["loop_s"] for w in result.workers)
    return result, result.samples / loop


def plain_loop(spec_dict: dict, batch: int, threads: int) -> tuple[float, float]:
    """(samples/s, test AUC) of the job's model trained in one process on ``threads``."""
    torch.set_num_threads(threads)
    spec = parse_spec(spec_dict)
    data = load_dataset(spec.data, "bce", spec.seed, None, spec.model.table.buckets)
    torch.manual_seed(spec.seed)
    net = build_model(spec.model, data.inputs, 1)
    local = LocalRows(net, {0: data.ids_train.ravel()}, spec.seed)
    dense = torch.optim.Adam(net.parameters(), lr=spec.optimizer.lr)
    sparse = torch.optim.Adagrad(local.parameters(), lr=spec.sparse_optimizer.lr)
    ids, x = torch.from_numpy(data.ids_train), torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train).float().reshape(-1, 1)
    gen, seen = torch.Generator().manual_seed(0), 0
    t0 = time.perf_counter()
    for _ in range(spec.training.epochs):
        order = torch.randperm(len(ids), generator=gen)
        for lo in range(0, len(ids) - batch + 1, batch):
            idx = order[lo : lo + batch]
            dense.zero_grad()
            sparse.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net(ids[idx], x[idx]), y[idx]
            )
            loss.backward()
            dense.step()
            sparse.step()
            seen += batch
    rate = seen / (time.perf_counter() - t0)
    with torch.no_grad():
        scores = net(torch.from_numpy(data.ids_test), torch.from_numpy(data.x_test))[:, 0]
    return rate, roc_auc_score(data.y_test, scores.numpy())


def dense_job(samples: int, epochs: int, n_ids: int, batch: int, rows: int) -> dict:
    spec = ctr_job("deepfm", samples, epochs, n_ids, batch)
    spec["model"] = {
        "module": "ctr_dense:build",
        "kwargs": {"rows": rows, "dim": WIDTH, "fields": 8, "hidden": 64},
        "code": str(HERE),
        "embedding": {"dim": WIDTH, "buckets": rows},
        "loss": "bce",
    }
    return spec


def zero_rows(run_dir: Path) -> float:
    rows = load_model(run_dir / "model.pt").net.embedding.rows[1:]
    return float((rows == 0).all(dim=1).float().mean())


def throughput(samples: int, n_ids: int, tmp: Path) -> list[str]:
    lines = [
        f"DeepFM, {n_ids:,} ids per field × 8 fields, dim {WIDTH}, 2 workers, sync\n",
        "| batch per worker | plain loop (2× batch, 2 threads) | sparse tables | vs plain | "
        "target | dense table, 1M rows, pushed whole | vs plain |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in (256, 2048):
        base, _ = plain_loop(ctr_job("deepfm", samples, 1, n_ids, batch), 2 * batch, 2)
        result, rate = run(ctr_job("deepfm", samples, 1, n_ids, batch), tmp / f"sparse{batch}")
        _, dense = run(dense_job(samples // 4, 1, n_ids, batch, 2**20), tmp / f"dense{batch}")
        touched = sum(s["rows_pushed"] for s in result.shards) / result.steps
        lines.append(
            f"| {batch} | {base:,.0f} samples/s | {rate:,.0f} | {rate / base:.2f}× | ≥ 0.7× | "
            f"{dense:,.0f} | {dense / base:.2f}× |"
        )
    lines.append(
        f"\nrows touched per step (batch 2048): {touched:,.0f} of {result.table_rows:,} in the table"
    )
    return lines


def quality(samples: int, tmp: Path) -> list[str]:
    lines = [
        "| model | job test AUC | plain loop test AUC | difference | target |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in ("logistic", "fm", "deepfm"):
        spec = ctr_job(kind, samples, 2)
        result, _ = run(spec, tmp / kind)
        _, plain_auc = plain_loop(spec, 512, 2)
        target = "within 0.01" if kind != "logistic" else "below fm and deepfm"
        lines.append(
            f"| {kind} | {result.test_auc:.4f} | {plain_auc:.4f} | "
            f"{result.test_auc - plain_auc:+.4f} | {target} |"
        )
    lines += [
        "\n| logistic, FTRL (α 5, β 1) | zero rows | test AUC | vs L2 alone | target |",
        "|---|---:|---:|---:|---:|",
    ]
    ftrl = {}
    for name, hp in (("l2 0.1", {"l2": 0.1}), ("l1 0.05 + l2 0.1", {"l1": 0.05, "l2": 0.1})):
        spec = ctr_job("logistic", samples, 2)
        spec["sparse_optimizer"] = {"name": "ftrl", "lr": 5.0, **hp}
        out = tmp / name.replace(" ", "")
        result, _ = run(spec, out)
        ftrl[name] = (zero_rows(out), result.test_auc)
    alone = ftrl["l2 0.1"][1]
    for name, (zeros, auc) in ftrl.items():
        target = "most rows 0; within 0.01" if "l1" in name else "—"
        lines.append(f"| {name} | {zeros:.1%} | {auc:.4f} | {auc - alone:+.4f} | {target} |")
    return lines


def lifecycle(samples: int, n_ids: int, tmp: Path) -> list[str]:
    """An FM job with an unbounded table against the same job under a row budget of half its
    rows (``lfu`` and ``lru``) and with admission after two sightings."""
    base = ctr_job("fm", samples, 2, n_ids)
    unbounded, _ = run(base, tmp / "unbounded")
    budget = unbounded.table_rows // 2
    lines = [
        f"FM, {n_ids:,} ids per field × 8 fields, 2 epochs; unbounded: {unbounded.table_rows:,} "
        f"rows\n",
        "| table | rows held | evicted | test AUC | vs unbounded | target |",
        "|---|---:|---:|---:|---:|---:|",
        f"| unbounded | {unbounded.table_rows:,} | 0 | {unbounded.test_auc:.4f} | — | — |",
    ]
    variants = (
        (f"max_rows {budget:,}, lfu", {"max_rows": budget, "evict": "lfu"}),
        (f"max_rows {budget:,}, lru", {"max_rows": budget, "evict": "lru"}),
        ("admit_after 2", {"admit_after": 2}),
    )
    for name, options in variants:
        spec = ctr_job("fm", samples, 2, n_ids)
        spec["model"]["embedding"].update(options)
        result, _ = run(spec, tmp / name.replace(" ", "").replace(",", ""))
        evicted = sum(s["rows_evicted"] for s in result.shards)
        bound = f"≤ {budget:,} rows; " if "max_rows" in options else ""
        lines.append(
            f"| {name} | {result.table_rows:,} | {evicted:,} | {result.test_auc:.4f} | "
            f"{result.test_auc - unbounded.test_auc:+.4f} | {bound}AUC ≥ unbounded − 0.01 |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller tables and data")
    args = parser.parse_args()
    big, configured, touched = (
        (10**6, 5 * 10**6, 10**5) if args.quick else (10**7, 5 * 10**7, 10**6)
    )
    samples, n_ids = (40_000, 10_000) if args.quick else (200_000, 100_000)
    print(f"# sparse tables — {date.today()} — {platform.machine()}, {os.cpu_count()} CPUs\n")
    print("\n".join(table_size(4096, big)) + "\n")
    print("\n".join(memory(configured, touched)) + "\n")
    with ray_session(), TemporaryDirectory() as tmp:
        print("\n".join(throughput(samples, n_ids, Path(tmp))) + "\n")
        print("\n".join(quality(samples, Path(tmp))) + "\n")
        print("\n".join(lifecycle(samples, n_ids, Path(tmp))))


if __name__ == "__main__":
    main()
