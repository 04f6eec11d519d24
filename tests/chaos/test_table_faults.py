"""Kill a worker or a shard of a job whose embedding rows live on the shards: the job reaches
its full step budget and its tables and parameters equal a fault-free run's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ps.jobs.runner import run_job
from ps.spec import parse_spec
from tests.chaos.conftest import kill_actor, shard_version
from tests.chaos.test_worker_and_shard import _in_thread
from tests.conftest import wait_until
from tests.runtime.test_tables import ctr_spec
from workers.models import load_model

STEPS = 1000  # long enough that the kills land mid-job


def deterministic() -> dict:
    spec = ctr_spec("fm", max_steps=STEPS, eval_every_steps=100)
    spec["checkpoint"] = {"every_steps": 100}
    return spec


def trained(run_dir):
    net = load_model(run_dir / "model.pt").net
    return net.embedding.ids.clone(), net.embedding.rows.clone(), net.bias.detach().clone()


@pytest.fixture(scope="module")
def reference(ray_runtime, tmp_path_factory):
    out = tmp_path_factory.mktemp("table-reference")
    return run_job(parse_spec(deterministic()), out), trained(out)


def _check(result, expected, run_dir, expected_state):
    assert result.steps == result.total_steps == STEPS == expected.steps
    assert result.stop_reason == expected.stop_reason == "max_steps"
    ids, rows, bias = trained(run_dir)
    assert torch.equal(ids, expected_state[0])
    torch.testing.assert_close(rows, expected_state[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bias, expected_state[2], rtol=1e-5, atol=1e-6)
    assert result.table_rows == len(ids) - 1  # the sentinel row is not a row


def test_a_killed_worker_then_a_killed_shard_leave_the_tables_equal_to_a_fault_free_run(
    ray_runtime, reference, tmp_path
):
    """The worker's replacement replays its step's rows; the restored shards reload every row,
    its Adagrad state and the pending sync gradients from the checkpoint."""
    expected, state = reference
    thread, box = _in_thread(deterministic(), tmp_path, "kill-tables")
    wait_until(lambda: shard_version("kill-tables") >= 150, 60, what="150 steps")
    kill_actor("ps:kill-tables:worker:0")
    wait_until(
        lambda: (tmp_path / "checkpoints" / "step-00000400").is_dir(), 120, what="a checkpoint"
    )
    kill_actor("ps:kill-tables:shard:1")
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.worker_restarts == 1 and result.restores == 1
    _check(result, expected, tmp_path, state)
    assert np.isfinite(result.val_auc)
