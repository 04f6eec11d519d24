"""Time to accuracy on digits: a real job against a plain PyTorch loop, in the same run.

Both train the same MLP with Adam on the same split and evaluate on the validation split every
10 updates; the figure is the wall time until validation accuracy first reaches the target
(0.97). For the job it is measured twice: from the call (Ray actors start-up included) and from
the moment training runs.

    python benchmarks/time_to_accuracy.py [--target 0.97]
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
from workers.evaluation import evaluate
from workers.models import build_network

SPEC = {
    "seed": 0,
    "data": {"source": "digits", "validation_split": 0.2, "test_split": 0.1},
    "model": {
        "layers": [
            {"type": "dense", "units": 128, "activation": "relu"},
            {"type": "dense", "units": 10},
        ]
    },
    "optimizer": {"name": "adam", "lr": 0.003},
    "training": {
        "workers": 2,
        "mode": "sync",
        "batch_size": 32,
        "epochs": 40,
        "eval_every_steps": 10,
    },
}


def plain(target: float) -> tuple[float, int]:
    torch.set_num_threads(2)
    spec = parse_spec(SPEC)
    data = load_dataset(spec.data, "cross_entropy", 0)
    torch.manual_seed(0)
    net = build_network(spec.model, data.inputs, data.n_outputs)
    opt = torch.optim.Adam(net.parameters(), lr=0.003)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    t0, step = time.perf_counter(), 0
    gen = torch.Generator().manual_seed(0)
    while True:
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
            step += 1
            if (
                step % 10 == 0
                and evaluate(net, data.x_val, data.y_val, "cross_entropy")["accuracy"] >= target
            ):
                return time.perf_counter() - t0, step
            net.train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.97)
    args = parser.parse_args()
    plain_s, plain_steps = plain(args.target)
    ray.init(
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
    )
    reached: dict = {}

    def on_event(event: dict) -> None:
        if (
            event.kind == "evaluation"
            and "step" not in reached
            and (event.val_accuracy or 0) >= args.target
        ):
            reached.update(
                step=event.step, running_s=event.elapsed_s, call_s=time.perf_counter() - start
            )

    with TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_job(parse_spec(SPEC), Path(tmp) / "run", on_event=on_event)
    ray.shutdown()
    print(
        f"# time to {args.target} validation accuracy on digits — {date.today()} — {platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print("| | seconds | updates | vs plain | target |")
    print("|---|---:|---:|---:|---:|")
    print(f"| plain PyTorch loop (batch 64, 2 threads) | {plain_s:.2f} | {plain_steps} | 1.00× | |")
    if not reached:
        print(f"| job (2 workers × 32, sync) | did not reach {args.target} | | |")
        return
    print(
        f"| job, from training start | {reached['running_s']:.2f} | {reached['step']} | {reached['running_s'] / plain_s:.2f}× | ≤ 2× |"
    )
    print(
        f"| job, from the call (actor start-up included) | {reached['call_s']:.2f} | {reached['step']} | {reached['call_s'] / plain_s:.2f}× | |"
    )


if __name__ == "__main__":
    main()
