"""The SQLite job store: atomic create, terminal states are final, survives reopening."""

from __future__ import annotations

import pytest

from ps.jobs.errors import JobExists, JobNotFound, TerminalState
from ps.jobs.state import TERMINAL, JobState
from ps.jobs.store import JobStore


def test_terminal_states():
    assert (
        {s for s in JobState if s.is_terminal()}
        == TERMINAL
        == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    )


def test_lifecycle_and_refusal_to_leave_a_terminal_state(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    job = store.create("a", "first", {"seed": 1}, "/runs/a")
    assert job.state == JobState.QUEUED and job.seq == 1
    with pytest.raises(JobExists):
        store.create("a", "again", {"seed": 2}, "/runs/a2")
    assert store.get("a").spec == {"seed": 1}
    store.transition("a", JobState.RUNNING, started_at=5.0)
    store.update("a", progress={"step": 3})
    done = store.transition("a", JobState.SUCCEEDED, result={"test_accuracy": 0.97})
    assert done.finished_at is not None and done.result == {"test_accuracy": 0.97}
    for state in (JobState.RUNNING, JobState.FAILED, JobState.QUEUED):
        with pytest.raises(TerminalState, match="is SUCCEEDED"):
            store.transition("a", state)
    store.update("a", progress={"step": 99})  # ignored for terminal jobs
    assert store.get("a").progress == {"step": 3}
    with pytest.raises(JobNotFound):
        store.transition("zzz", JobState.RUNNING)
    store.close()
    reopened = JobStore(tmp_path / "jobs.db")
    assert reopened.get("a").result == {"test_accuracy": 0.97}
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_list_filters_and_paginates_newest_first(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    for i in range(5):
        store.create(f"j{i}", "", {}, "/r")
    store.transition("j1", JobState.CANCELLED)
    assert [j.job_id for j in store.list(limit=2)] == ["j4", "j3"]
    assert [j.job_id for j in store.list(limit=2, before_seq=4)] == ["j2", "j1"]
    assert [j.job_id for j in store.list([JobState.CANCELLED])] == ["j1"]
    assert [j.job_id for j in store.in_states(JobState.QUEUED)] == ["j0", "j2", "j3", "j4"]
