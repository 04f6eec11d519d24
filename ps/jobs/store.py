"""The durable job store: SQLite in WAL mode, one row per job.

It survives service restarts and refuses to move a job out of a terminal state.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ps.jobs.errors import JobExists, JobNotFound, TerminalState
from ps.jobs.state import JobState

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    progress    TEXT,
    result      TEXT,
    error       TEXT NOT NULL DEFAULT '',
    run_dir     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    resume      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""


@dataclass
class JobRecord:
    """One job as stored."""

    job_id: str
    seq: int
    name: str
    state: JobState
    spec: dict[str, Any]
    created_at: float
    run_dir: str
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str = ""
    attempts: int = 0
    resume: bool = False


def _row(r: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job_id=r["job_id"],
        seq=r["seq"],
        name=r["name"],
        state=JobState(r["state"]),
        spec=json.loads(r["spec"]),
        created_at=r["created_at"],
        run_dir=r["run_dir"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        progress=json.loads(r["progress"]) if r["progress"] else None,
        result=json.loads(r["result"]) if r["result"] else None,
        error=r["error"],
        attempts=r["attempts"],
        resume=bool(r["resume"]),
    )


class JobStore:
    """Thread-safe access to the jobs table.

    Args:
        path: the SQLite file (created with its parent directory).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
        if "resume" not in columns:  # a store written before resume existed
            self._db.execute("ALTER TABLE jobs ADD COLUMN resume INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, job_id: str, name: str, spec: dict[str, Any], run_dir: str) -> JobRecord:
        """Insert a QUEUED job atomically.

        Raises:
            JobExists: the id is taken (never overwritten).
        """
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO jobs(job_id, seq, name, state, spec, created_at, run_dir) "
                    "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?, ?, ?, ?)",
                    (job_id, name, JobState.QUEUED.value, json.dumps(spec), time.time(), run_dir),
                )
            except sqlite3.IntegrityError:
                raise JobExists(f"job {job_id!r} already exists") from None
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            r = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if r is None:
            raise JobNotFound(f"no job {job_id!r}")
        return _row(r)

    def list(
        self, states: list[JobState] | None = None, limit: int = 100, before_seq: int | None = None
    ) -> list[JobRecord]:
        """Jobs newest first, optionally filtered by state, paginated by ``before_seq``."""
        query, args = "SELECT * FROM jobs WHERE 1=1", []
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            args += [s.value for s in states]
        if before_seq is not None:
            query += " AND seq < ?"
            args.append(before_seq)
        query += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [_row(r) for r in rows]

    def in_states(self, *states: JobState) -> list[JobRecord]:
        """Jobs in ``states``, oldest first (FIFO order)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(states))}) ORDER BY seq",
                [s.value for s in states],
            ).fetchall()
        return [_row(r) for r in rows]

    def count_by_state(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"
            ).fetchall()
        return {r["state"]: r["n"] for r in rows}

    def transition(self, job_id: str, state: JobState, **fields: Any) -> JobRecord:
        """Move a job to ``state``, updating ``fields`` (started_at, result, error, ...).

        Raises:
            TerminalState: the job is already SUCCEEDED, FAILED or CANCELLED.
            JobNotFound: no such job.
        """
        sets = {"state": state.value, **_encode(fields)}
        if state.is_terminal():
            sets.setdefault("finished_at", time.time())
        with self._lock:
            cur = self._db.execute(
                f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in sets)} "
                f"WHERE job_id = ? AND state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')",
                [*sets.values(), job_id],
            )
            if cur.rowcount == 0:
                self._refuse(job_id, f"it cannot become {state.value}")
        return self.get(job_id)

    def reopen(self, job_id: str) -> JobRecord:
        """Move a FAILED or CANCELLED job back to QUEUED to resume it from its checkpoint.

        The one sanctioned way out of a terminal state (SUCCEEDED stays final): the failure
        budget starts afresh and the job is marked to resume.

        Raises:
            TerminalState: the job is SUCCEEDED or not terminal.
        """
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state = 'QUEUED', attempts = 0, resume = 1, error = '', "
                "finished_at = NULL WHERE job_id = ? AND state IN ('FAILED', 'CANCELLED')",
                (job_id,),
            )
            if cur.rowcount == 0:
                self._refuse(job_id, "only FAILED or CANCELLED jobs resume")
        return self.get(job_id)

    def _refuse(self, job_id: str, why: str) -> None:
        """Raise why a state change did not happen (the caller holds the lock)."""
        r = self._db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if r is None:
            raise JobNotFound(f"no job {job_id!r}")
        raise TerminalState(f"job {job_id!r} is {r['state']}; {why}")

    def update(self, job_id: str, **fields: Any) -> None:
        """Update non-state fields (progress) of a job that is not terminal; a no-op otherwise."""
        enc = _encode(fields)
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in enc)} "
                f"WHERE job_id = ? AND state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')",
                [*enc.values(), job_id],
            )

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        k: json.dumps(v, default=str) if k in ("progress", "result") and v is not None else v
        for k, v in fields.items()
    }
