"""Start-up: from SubmitJob on a running service to the job's first parameter-server update.

A service (``run_service``, embedded Ray, the same code ``psctl serve`` runs) is started and
warmed with one job; then each measured job is submitted over gRPC and timed from the call to
the first update, split into: the SubmitJob call (admission), queued until the scheduler starts
its supervisor, the supervisor's start and the data (STARTING), the actors' start (RUNNING), and
the first update. The target is ≤ 2 s.

    python benchmarks/startup.py [--jobs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import ray

from ps.api.convert import proto_to_event
from ps.jobs.events import Progress, StateChanged
from ps.service import ServiceConfig, run_service

JOB = {
    "data": {"source": "digits"},
    "model": {
        "layers": [
            {"type": "dense", "units": 64, "activation": "relu"},
            {"type": "dense", "units": 10},
        ]
    },
    "training": {"workers": 2, "epochs": 3},
}


def one(client, job_id: str) -> dict[str, float]:
    t0 = time.perf_counter()
    client.submit(JOB, job_id=job_id)
    marks = {"SubmitJob": time.perf_counter() - t0}
    for message in client.watch(job_id):
        event = proto_to_event(message)
        now = time.perf_counter() - t0
        if isinstance(event, StateChanged) and event.state.value not in marks:
            marks[event.state.value] = now
        if isinstance(event, Progress) and event.step > 0 and "update" not in marks:
            marks["update"] = now  # the first progress report after an update
        if message.WhichOneof("event") == "finished":
            break
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    ray.init(
        address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_service(ServiceConfig(storage=Path(tmp), port=0, metrics_port=-1)) as service,
    ):
        from ps.client import Client

        with Client(service.address) as client:
            one(client, "warm-up")
            runs = [one(client, f"job-{i}") for i in range(args.jobs)]
    ray.shutdown()
    print(f"# start-up — {date.today()} — {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"(median of {args.jobs} jobs, seconds from the SubmitJob call; 2 workers, 1 shard)\n")
    print("| SubmitJob returned | STARTING | RUNNING (shards up) | first update | target |")
    print("|---:|---:|---:|---:|---:|")
    med = {k: statistics.median(r.get(k, float("nan")) for r in runs) for k in runs[0]}
    print(
        f"| {med['SubmitJob']:.2f} | {med.get('STARTING', float('nan')):.2f} "
        f"| {med.get('RUNNING', float('nan')):.2f} | {med.get('update', float('nan')):.2f} | ≤ 2 s |"
    )


if __name__ == "__main__":
    main()
