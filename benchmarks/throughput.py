"""Training throughput of real jobs against a plain single-process PyTorch loop.

An MLP of about 1.3M parameters (256 → 1024 → 1024 → 10) on synthetic data, 1 CPU per worker,
per-worker batch 128, momentum SGD. Modes: sync with 1 and 2 workers, async and ssp with 2
workers. Baseline, in the same run: a plain PyTorch loop (same model, data and rule) with batch
128 on 1 thread and with batch 256 on 2 threads (the same work per step as 2 workers × 128 on the
same 2 cores). A job's samples/s are its samples over its workers' step-loop time (start-up and
the final evaluation and export left out, as for the plain loop).

    python benchmarks/throughput.py [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

import ray
import torch

from ps.jobs.runner import run_job
from ps.spec import parse_spec
from workers.data import load_dataset
from workers.models import build_network

MODEL = {
    "layers": [
        {"type": "dense", "units": 1024, "activation": "relu"},
        {"type": "dense", "units": 1024, "activation": "relu"},
        {"type": "dense", "units": 10},
    ]
}
DATA = {
    "source": "synthetic-classification",
    "n_samples": 40000,
    "n_features": 256,
    "n_classes": 10,
    "validation_split": 0.0,
    "test_split": 0.0,
}


def job(workers: int, mode: str, steps: int) -> dict:
    return {
        "data": DATA,
        "model": MODEL,
        "optimizer": {"name": "momentum", "lr": 1e-3},
        "training": {
            "workers": workers,
            "mode": mode,
            "staleness": 2,
            "batch_size": 128,
            "epochs": 1000,
            "max_steps": steps * (1 if mode == "sync" else workers),
            "eval_every_steps": 100000,
        },
        "checkpoint": {"every_steps": 1000000},
    }


def plain_loop(batch: int, threads: int, steps: int) -> float:
    """Samples/s of a single-process training loop on the same model and data."""
    torch.set_num_threads(threads)
    spec = parse_spec(job(1, "sync", steps))
    data = load_dataset(spec.data, "cross_entropy", 0)
    torch.manual_seed(0)
    net = build_network(spec.model, data.inputs, data.n_outputs)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    t0 = None
    for step in range(steps + 10):
        if step == 10:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(x), (batch,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    base_256 = plain_loop(256, 2, args.steps)
    base_128 = plain_loop(128, 1, args.steps)
    ray.init(
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
    )
    rows = []
    with TemporaryDirectory() as tmp:
        for workers, mode in ((1, "sync"), (2, "sync"), (2, "async"), (2, "ssp")):
            result = run_job(
                parse_spec(job(workers, mode, args.steps)), Path(tmp) / f"{mode}{workers}"
            )
            loop = max(w["loop_s"] for w in result.workers)
            rows.append((mode, workers, result.samples / loop, result.n_params))
    ray.shutdown()
    print(f"# training throughput — {date.today()} — {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"model: {rows[0][3]:,} parameters; {args.steps} updates per worker; per-worker batch 128\n"
    )
    print(
        f"plain PyTorch loop: batch 256 on 2 threads {base_256:,.0f} samples/s; batch 128 on 1 thread {base_128:,.0f} samples/s\n"
    )
    print(
        "| mode | workers | samples/s | vs plain (256, 2 threads) | target | "
        "vs plain (128, 1 thread) | target |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode, workers, sps, _ in rows:
        wide, narrow = TARGETS[(mode, workers)]
        print(
            f"| {mode} | {workers} | {sps:,.0f} | {sps / base_256:.2f}× | {wide} "
            f"| {sps / base_128:.2f}× | {narrow} |"
        )


# (mode, workers) -> targets against the plain loop at (256, 2 threads) and (128, 1 thread).
TARGETS = {
    ("sync", 1): ("—", "≥ 0.9×"),
    ("sync", 2): ("≥ 0.7×", "≥ 1.7×"),
    ("async", 2): ("≥ 0.7×", "—"),
    ("ssp", 2): ("≥ 0.7×", "—"),
}


if __name__ == "__main__":
    main()
