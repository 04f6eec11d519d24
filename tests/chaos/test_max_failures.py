"""Failures beyond training.max_failures end the job FAILED with the cause, in GetJob and psctl."""

from __future__ import annotations

import grpc
import pytest
from typer.testing import CliRunner

from ps.api.convert import state_from_proto
from ps.cli import app
from tests.chaos.conftest import kill_actor, shard_version
from tests.conftest import wait_until
from tests.runtime.helpers import spec
from tests.service.conftest import TOKEN


def test_worker_failures_beyond_the_budget_fail_the_job(service):
    client = service.client()
    client.submit(
        spec(
            training={
                "workers": 2,
                "batch_size": 8,
                "epochs": 200,
                "max_steps": 3000,
                "max_failures": 1,
            },
            checkpoint={"every_steps": 50},
        ),
        job_id="fragile",
    )
    wait_until(lambda: shard_version("fragile") >= 5, 60, what="training to start")
    kill_actor("ps:fragile:worker:0")
    kill_actor("ps:fragile:worker:0#1")  # the replacement dies too: 2 failures > max_failures=1

    def failed():
        job = client.get("fragile")
        return job if state_from_proto(job.state).value == "FAILED" else None

    job = wait_until(failed, 120, what="the job to fail")
    assert "worker 0 failed 2 times" in job.error and "max_failures=1" in job.error
    out = CliRunner().invoke(
        app, ["status", "fragile", "--server", service.address, "--token", TOKEN]
    )
    assert (
        out.exit_code == 0
        and "FAILED" in out.output
        and "worker 0 failed 2 times" in " ".join(out.output.split())
    )

    # Once the cause is fixed, the job resumes from its last checkpoint with a fresh budget.
    out = CliRunner().invoke(
        app, ["resume", "fragile", "--server", service.address, "--token", TOKEN]
    )
    assert out.exit_code == 0, out.output
    final = [e for e in client.watch("fragile")][-1].finished
    assert state_from_proto(final.state).value == "SUCCEEDED", final.error
    assert final.result.steps == 3000
    with pytest.raises(grpc.RpcError) as info:  # a succeeded job stays succeeded
        client.resume("fragile")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Cancelling a finished job changes nothing and says so (exit 0).
    out = CliRunner().invoke(
        app, ["cancel", "fragile", "--server", service.address, "--token", TOKEN]
    )
    assert out.exit_code == 0, out.output
    assert "had already finished (SUCCEEDED)" in " ".join(out.output.split())
    assert state_from_proto(client.get("fragile").state).value == "SUCCEEDED"
