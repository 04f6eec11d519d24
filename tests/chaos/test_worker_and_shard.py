"""Kill a worker or a parameter-server shard mid-job: the job still succeeds, correctly."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from ps.jobs.runner import run_job
from ps.protocol import shm
from ps.spec import parse_spec
from tests.chaos.conftest import kill_actor, shard_version
from tests.conftest import wait_until
from tests.runtime.helpers import flat_params, spec

STEPS = 2000  # long enough that the kills land mid-job


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
            "eval_every_steps": 50,
        },
        ps={"shards": 2},
        checkpoint={"every_steps": 100},
    )


@pytest.fixture(scope="module")
def reference(ray_runtime, toy, tmp_path_factory):
    """The fault-free run both kill tests must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    return run_job(parse_spec(deterministic(toy)), out), flat_params(out)


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_killed_worker_is_replaced_and_the_result_equals_a_fault_free_run(
    ray_runtime, toy, reference, tmp_path
):
    expected, expected_params = reference
    thread, box = _in_thread(deterministic(toy), tmp_path / "chaos", "kill-worker")
    wait_until(lambda: shard_version("kill-worker") >= 150, 60, what="150 steps")
    kill_actor("ps:kill-worker:worker:1")
    thread.join(timeout=180)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.steps == STEPS == expected.steps
    assert result.stop_reason == expected.stop_reason == "max_steps"
    assert result.worker_restarts == 1
    assert shm.existing(shm.prefix("kill-worker")) == []  # the killed worker's buffers are gone too
    events = _history(tmp_path / "chaos")
    assert [e["worker"] for e in events if e["type"] == "worker_restart"] == [1]
    torch.testing.assert_close(
        flat_params(tmp_path / "chaos"), expected_params, rtol=1e-5, atol=1e-6
    )


def test_killed_shard_is_restored_and_the_result_equals_a_fault_free_run(
    ray_runtime, toy, reference, tmp_path
):
    """A restore replays the steps since the last checkpoint exactly (deterministic batches and
    dropout, the whole optimizer state in the checkpoint): sync parameters equal a fault-free
    run's, and the job makes its full step budget."""
    expected, expected_params = reference
    thread, box = _in_thread(deterministic(toy), tmp_path, "kill-shard")
    wait_until(
        lambda: (tmp_path / "checkpoints" / "step-00000200").is_dir(), 120, what="a checkpoint"
    )
    kill_actor("ps:kill-shard:shard:1")
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.restores == 1
    assert result.steps == result.total_steps == STEPS == expected.steps
    assert result.stop_reason == expected.stop_reason
    assert result.samples > 0 and result.final_evaluation["step"] == STEPS
    torch.testing.assert_close(flat_params(tmp_path), expected_params, rtol=1e-5, atol=1e-6)
    events = _history(tmp_path)
    (restore,) = [e for e in events if e["type"] == "restore"]
    assert restore["step"] >= 200 and restore["step"] % 100 == 0
    steps = [e["step"] for e in events if e["type"] == "evaluation"]
    assert steps == sorted(set(steps)), "evaluations after the restore repeat none before it"
    assert steps[-1] == STEPS
    assert shm.existing(shm.prefix("kill-shard")) == []
