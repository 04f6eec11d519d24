"""A dead supervisor is restarted by the job manager; a diverging job fails with the reason."""

from __future__ import annotations

import json

import pytest

from ps.errors import PSError
from ps.jobs.runner import run_job
from ps.spec import parse_spec
from tests.chaos.conftest import kill_actor, shard_version
from tests.conftest import wait_until
from tests.runtime.helpers import spec


def test_killed_supervisor_is_restarted_from_the_last_checkpoint(service):
    client = service.client()
    client.submit(
        spec(
            training={"workers": 2, "batch_size": 16, "epochs": 30}, checkpoint={"every_steps": 40}
        ),
        job_id="lost-supervisor",
    )
    wait_until(
        lambda: (service.storage / "lost-supervisor" / "checkpoints" / "step-00000080").is_dir(),
        120,
        what="a checkpoint",
    )
    kill_actor("ps:lost-supervisor:supervisor")
    final = wait_until(
        lambda: (j := client.get("lost-supervisor")).finished_at and j, 180, what="the job to end"
    )
    assert final.error == "" and final.attempts == 2
    result = json.loads(final.result.result_json)
    assert result["test_accuracy"] >= 0.9
    # The whole budget, and the reason a fault-free run stops for.
    assert result["steps"] == result["total_steps"] == 30 * 40 and result["stop_reason"] == "epochs"
    evaluations = [
        json.loads(x)
        for x in (service.storage / "lost-supervisor" / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [e["step"] for e in evaluations if e["type"] == "evaluation"]
    assert steps == sorted(set(steps)) and steps[-1] == result["steps"]


def test_a_diverging_job_fails_with_the_reason(ray_runtime, tmp_path):
    diverging = spec(
        data={"source": "synthetic-regression", "n_samples": 500},
        optimizer={"name": "sgd", "lr": 1e3},
        model={"layers": [{"type": "dense", "units": 1}], "loss": "mse"},
        training={"workers": 1, "epochs": 50, "divergence_threshold": 5},
    )
    with pytest.raises(PSError, match=r"diverged: 5 non-finite gradients in a row"):
        run_job(parse_spec(diverging), tmp_path, job_id="diverging")
    assert shard_version("diverging") == -1  # its actors are gone
