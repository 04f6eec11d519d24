"""What evaluation costs a default job: its share of the training wall time.

The workload issue #26 measured: an MLP of about 1.3M parameters (256 → 1024 → 1024 → 10) on
40,000 synthetic rows (validation 10%, test 10%), 2 workers × 128 in sync mode, momentum SGD,
evaluation once per epoch (the default). The baseline, in the same run, is the same job with
periodic evaluation switched off. The figure is the job's own training wall time (from its start
to its last update, evaluations included as they ran beside the steps; the final evaluation and
the export after training are left out of both), so it is what the user waits for.

    python benchmarks/evaluation.py [--epochs 6]
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

from ps.jobs.runner import ray_session, run_job
from ps.spec import parse_spec

TARGET_SHARE = 0.05  # issue #26: evaluation's share of a default job's wall time ≤ 5%


def job(epochs: int, evaluate: bool, train_rows: int) -> dict:
    return {
        "data": {
            "source": "synthetic-classification",
            "n_samples": 40000,
            "n_features": 256,
            "n_classes": 10,
        },
        "model": {
            "layers": [
                {"type": "dense", "units": 1024, "activation": "relu"},
                {"type": "dense", "units": 1024, "activation": "relu"},
                {"type": "dense", "units": 10},
            ]
        },
        "optimizer": {"name": "momentum", "lr": 1e-3},
        "training": {
            "workers": 2,
            "batch_size": 128,
            "epochs": epochs,
            "eval_train_rows": train_rows,
            **({} if evaluate else {"eval_every_steps": 10**9}),
        },
        "checkpoint": {"every_steps": 10**9},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--eval-train-rows",
        type=int,
        default=2048,
        help="the training-split sample (2048: the default; 20000: what evaluated before)",
    )
    args = parser.parse_args()
    walls = {}
    with ray_session(), TemporaryDirectory() as tmp:
        for evaluate in (False, True, False, True):  # interleaved: drift hits both alike
            spec = parse_spec(job(args.epochs, evaluate, args.eval_train_rows))
            result = run_job(spec, Path(tmp) / f"{evaluate}")
            walls.setdefault(evaluate, []).append(result.wall_time_s)
            steps = result.steps
    off, on = min(walls[False]), min(walls[True])
    share = 1 - off / on
    print(f"# evaluation cost — {date.today()} — {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"{steps} updates, 2 workers × 128, sync; {args.epochs} evaluations when on, each on "
        f"{args.eval_train_rows:,} training rows and 4,000 validation rows\n"
    )
    print("| job | training wall s (best of 2) | evaluation's share | target |")
    print("|---|---:|---:|---:|")
    print(f"| evaluation off (baseline) | {off:.2f} | — | — |")
    print(f"| evaluation every epoch (default) | {on:.2f} | {share:.1%} | ≤ {TARGET_SHARE:.0%} |")


if __name__ == "__main__":
    main()
