"""Kill a worker or a parameter-server shard mid-job: the job still succeeds, correctly."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from ps.jobs.runner import run_job
from ps.spec import parse_spec
from tests.chaos.conftest import kill_actor, shard_version
from tests.conftest import wait_until
from tests.runtime.helpers import flat_params, spec
from workers import shm

STEPS = 600


def _in_thread(spec_dict, out, job_id):
    box: dict = {}

    def target():
        try:
            box["result"] = run_job(parse_spec(spec_dict), out, job_id=job_id)
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] + x[:, 2] > 0).astype(np.int64)
    path = tmp_path_factory.mktemp("toy") / "toy.npz"
    np.savez(path, X=x, y=y)
    return path


def deterministic(path):
    return spec(
        data={"source": str(path), "validation_split": 0, "test_split": 0, "shuffle": False},
        model={
            "layers": [
                {"type": "dense", "units": 32, "activation": "tanh"},
                {"type": "dense", "units": 2},
            ]
        },
        optimizer={"name": "momentum", "lr": 0.05},
        training={
            "workers": 2,
            "mode": "sync",
            "batch_size": 1000,
            "epochs": 100000,
            "max_steps": STEPS,
        },
        checkpoint={"every_steps": 100},
    )


def test_killed_worker_is_replaced_and_the_result_equals_a_fault_free_run(
    ray_runtime, toy, tmp_path
):
    reference = run_job(parse_spec(deterministic(toy)), tmp_path / "reference")
    thread, box = _in_thread(deterministic(toy), tmp_path / "chaos", "kill-worker")
    wait_until(lambda: shard_version("kill-worker") >= 150, 60, what="150 steps")
    kill_actor("ps:kill-worker:worker:1")
    thread.join(timeout=180)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result["state"] == "SUCCEEDED" and result["steps"] == STEPS == reference["steps"]
    assert result["worker_restarts"] == 1
    assert shm.existing(shm.prefix("kill-worker")) == []  # the killed worker's buffers are gone too
    events = [
        json.loads(line) for line in (tmp_path / "chaos" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [e["worker"] for e in events if e["type"] == "worker_restart"] == [1]
    torch.testing.assert_close(
        flat_params(tmp_path / "chaos"), flat_params(tmp_path / "reference"), rtol=1e-5, atol=1e-6
    )


def test_killed_shard_is_restored_from_the_last_checkpoint(ray_runtime, tmp_path):
    job = spec(
        optimizer={"name": "adam", "lr": 0.005},
        training={"workers": 2, "batch_size": 32, "epochs": 12},
        ps={"shards": 2},
        checkpoint={"every_steps": 40},
    )
    thread, box = _in_thread(job, tmp_path, "kill-shard")
    wait_until(
        lambda: (tmp_path / "checkpoints" / "step-00000080").is_dir(), 120, what="a checkpoint"
    )
    kill_actor("ps:kill-shard:shard:1")
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result["state"] == "SUCCEEDED" and result["restores"] == 1
    assert result["steps"] == result["final_evaluation"]["step"]
    assert result["test_accuracy"] >= 0.93
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (restore,) = [e for e in events if e["type"] == "restore"]
    assert restore["step"] >= 80 and restore["step"] % 40 == 0
    steps = [e["step"] for e in events if e["type"] == "evaluation"]
    assert steps == sorted(set(steps)), "evaluations after the restore repeat none before it"
