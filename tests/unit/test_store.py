"""The SQLite job store: atomic create, terminal states are final, survives reopening, and a
record that cannot be read back is reported on its own."""

from __future__ import annotations

import dataclasses

import pytest

from ps.jobs.errors import JobExists, JobNotFound, TerminalState
from ps.jobs.events import JobResult, Progress
from ps.jobs.state import TERMINAL, JobState
from ps.jobs.store import JobStore
from ps.spec import parse_spec

SPEC = parse_spec({"seed": 1, "model": {"layers": [{"type": "dense", "units": 10}]}})
RESULT = JobResult(
    **{
        f.name: None
        for f in dataclasses.fields(JobResult)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    | {"job_id": "a", "stop_reason": "epochs", "steps": 3, "total_steps": 3, "test_accuracy": 0.97}
)


def test_terminal_states():
    assert (
        {s for s in JobState if s.is_terminal()}
        == TERMINAL
        == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    )


def test_lifecycle_and_refusal_to_leave_a_terminal_state(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    job = store.create("a", SPEC, "/runs/a")
    assert job.state == JobState.QUEUED and job.seq == 1
    with pytest.raises(JobExists):
        store.create("a", SPEC.model_copy(update={"seed": 2}), "/runs/a2")
    assert store.get("a").spec == SPEC
    store.transition("a", JobState.RUNNING, started_at=5.0)
    store.update("a", progress=Progress(step=3, total_steps=3, epoch=1.0))
    done = store.transition("a", JobState.SUCCEEDED, result=RESULT)
    assert done.finished_at is not None and done.result == RESULT
    for state in (JobState.RUNNING, JobState.FAILED, JobState.QUEUED):
        with pytest.raises(TerminalState, match="is SUCCEEDED"):
            store.transition("a", state)
    store.update("a", progress=Progress(step=99, total_steps=3, epoch=33.0))  # ignored: terminal
    assert store.get("a").progress.step == 3
    with pytest.raises(JobNotFound):
        store.transition("zzz", JobState.RUNNING)
    store.close()
    reopened = JobStore(tmp_path / "jobs.db")
    assert reopened.get("a").result == RESULT and reopened.get("a").spec == SPEC
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_list_filters_and_paginates_newest_first(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    for i in range(5):
        store.create(f"j{i}", SPEC, "/r")
    store.transition("j1", JobState.CANCELLED)
    assert [j.job_id for j in store.list(limit=2)] == ["j4", "j3"]
    assert [j.job_id for j in store.list(limit=2, before_seq=4)] == ["j2", "j1"]
    assert [j.job_id for j in store.list([JobState.CANCELLED])] == ["j1"]
    assert [j.job_id for j in store.in_states(JobState.QUEUED)] == ["j0", "j2", "j3", "j4"]


def test_a_record_that_cannot_be_read_back_is_reported_alone(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    for job_id in ("good", "old", "edited"):
        store.create(job_id, SPEC, "/r")
    store.close()
    raw = JobStore(tmp_path / "jobs.db")._db  # a fresh process: nothing cached
    raw.execute("UPDATE jobs SET spec = ? WHERE job_id = 'old'", ('{"data": {"noise": null}}',))
    raw.execute("UPDATE jobs SET progress = 'not json' WHERE job_id = 'edited'")
    store = JobStore(tmp_path / "jobs.db")
    jobs = {j.job_id: j for j in store.list()}
    assert jobs["good"].spec == SPEC and not jobs["good"].unreadable
    assert jobs["old"].spec is None and "cannot be read back" in jobs["old"].unreadable
    assert jobs["edited"].unreadable
