"""Faults are visible as they happen: a worker kill and a shard kill of a service job reach
``WatchJob`` over real gRPC and ``psctl watch`` as their own events, while the job still makes
its full step budget."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import ray

from ps.v1 import training_pb2 as pb
from tests.chaos.conftest import kill_actor
from tests.conftest import wait_until
from tests.runtime.helpers import spec
from tests.service.conftest import TOKEN

STEPS = 1200


def _shard_version(job_id: str) -> int:
    """Shard 0's version (its actor is named in the namespace of the Ray job that runs the
    service: here the test session's)."""
    try:
        actor = ray.get_actor(f"ps:{job_id}:shard:0")
        return ray.get(actor.stats.remote(), timeout=10).version
    except Exception:  # noqa: BLE001 - not created yet, or being replaced
        return -1


def test_worker_and_shard_faults_reach_watch_job_and_psctl_watch(service, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    np.savez(service.data_root / "faults.npz", X=x, y=(x[:, 0] > 0).astype(np.int64))
    job = spec(
        data={"source": "faults.npz", "validation_split": 0, "test_split": 0},
        model={"layers": [{"type": "dense", "units": 16}, {"type": "dense", "units": 2}]},
        training={
            "workers": 2,
            "mode": "sync",
            "batch_size": 1000,
            "epochs": 100000,
            "max_steps": STEPS,
            "eval_every_steps": 50,
        },
        ps={"shards": 2},
        checkpoint={"every_steps": 100},
    )
    job_id = "watch-faults"
    client = service.client()
    client.submit(job, job_id=job_id)
    seen: list = []
    watcher = threading.Thread(target=lambda: seen.extend(client.watch(job_id)))
    watcher.start()
    cli = subprocess.Popen(
        [sys.executable, "-m", "ps.cli", "watch", job_id, "--server", service.address],
        env={**os.environ, "PS_TOKEN": TOKEN, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def kinds():
        return [e.WhichOneof("event") for e in seen]

    wait_until(lambda: _shard_version(job_id) >= 100, 120, what="100 steps")
    kill_actor(f"ps:{job_id}:worker:1")
    wait_until(lambda: "worker_replaced" in kinds(), 60, what="WatchJob to stream the replacement")
    checkpoints = service.storage / job_id / "checkpoints"
    wait_until(lambda: len(list(checkpoints.glob("step-*[0-9]"))) >= 2, 120, what="checkpoints")
    kill_actor(f"ps:{job_id}:shard:1")
    wait_until(lambda: "restored" in kinds(), 120, what="WatchJob to stream the restore")
    watcher.join(timeout=300)
    output, _ = cli.communicate(timeout=60)

    (replaced,) = [e.worker_replaced for e in seen if e.WhichOneof("event") == "worker_replaced"]
    (restored,) = [e.restored for e in seen if e.WhichOneof("event") == "restored"]
    assert replaced.worker == 1 and replaced.step >= 100 and replaced.reason
    assert restored.step >= 100 and restored.step % 100 == 0 and "shard lost" in restored.reason
    final = seen[-1].finished  # the job's end comes last
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    assert final.result.steps == final.result.total_steps == STEPS
    assert cli.returncode == 0, output
    assert "worker 1 failed; a replacement resumes at step" in output, output
    assert "a shard was lost; every actor restored from the checkpoint at step" in output, output
