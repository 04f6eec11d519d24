"""A service that is stopped (SIGTERM's path: ``run_service`` exits) hands its running job back to
the queue with a checkpoint of where it is; the next start resumes it from there to its full
budget, and the hand-back is no failure of the job's."""

from __future__ import annotations

import json

from ps.jobs.state import JobState
from ps.jobs.store import JobStore
from ps.server.checkpoint import list_checkpoints
from tests.conftest import wait_until
from tests.runtime.helpers import spec
from tests.service.conftest import start_service

EPOCHS, STEPS_PER_EPOCH = 60, 40


def test_a_stopped_service_hands_its_job_back_and_the_next_start_resumes_it(ray_runtime, tmp_path):
    job = spec(
        training={"workers": 2, "batch_size": 16, "epochs": EPOCHS, "max_failures": 0},
        checkpoint={"every_steps": 100_000},  # only the hand-back writes one
    )
    with start_service(tmp_path) as svc, svc.client() as client:
        client.submit(job, job_id="handed-back")
        wait_until(
            lambda: client.get("handed-back").progress.step >= 50, 120, what="the job training"
        )
    # The service has stopped: the job is queued again, with a checkpoint past where it was.
    store = JobStore(tmp_path / "jobs.db")
    record = store.get("handed-back")
    store.close()
    assert record.state == JobState.QUEUED and record.resume
    assert (record.attempts, record.handbacks, record.failures) == (1, 1, 0)
    checkpoints = list_checkpoints(tmp_path / "runs" / "handed-back" / "checkpoints")
    assert len(checkpoints) == 1
    handed_back_at = int(checkpoints[0].name.split("-")[1])
    assert 50 <= handed_back_at < EPOCHS * STEPS_PER_EPOCH

    with start_service(tmp_path) as svc, svc.client() as client:
        final = [e for e in client.watch("handed-back")][-1].finished
        # max_failures=0: a hand-back counted as a failure would have failed the job.
        assert final.error == "", final.error
        result = json.loads(final.result.result_json)
        assert result["steps"] == result["total_steps"] == EPOCHS * STEPS_PER_EPOCH
        assert result["stop_reason"] == "epochs"
        assert result["test_accuracy"] >= 0.9
        assert (final.attempts, final.handbacks) == (2, 1)
    events = [
        json.loads(line)
        for line in (tmp_path / "runs" / "handed-back" / "metrics.jsonl").read_text().splitlines()
    ]
    evaluated = [e["step"] for e in events if e["type"] == "evaluation"]
    assert evaluated == sorted(set(evaluated))  # resumed where it stopped: nothing twice
