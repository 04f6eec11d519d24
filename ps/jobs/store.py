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

from ps.errors import clip
from ps.jobs.errors import JobExists, JobNotFound, StoreUnavailable, TerminalState
from ps.jobs.events import JobResult, Progress
from ps.jobs.state import JobState
from ps.spec import JobSpec

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
    resume      INTEGER NOT NULL DEFAULT 0,
    handbacks   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""


@dataclass
class JobRecord:
    """One job as stored.

    ``spec`` is None only when the stored row cannot be read back (written by an incompatible
    version, or edited by hand); ``unreadable`` then says why, and the job is reported on its own
    without blocking the others.
    """

    job_id: str
    seq: int
    name: str
    state: JobState
    spec: JobSpec | None
    created_at: float
    run_dir: str
    started_at: float | None = None
    finished_at: float | None = None
    progress: Progress | None = None
    result: JobResult | None = None
    error: str = ""
    attempts: int = 0
    resume: bool = False
    unreadable: str = ""
    handbacks: int = 0

    @property
    def failures(self) -> int:
        """The attempts the job ended itself: every start less those the service ended (a
        restart, or a stop that handed the job back). Counted against ``max_failures`` once
        an attempt has failed (that attempt included)."""
        return self.attempts - self.handbacks


def _decode_progress(text: str | None) -> Progress | None:
    if not text:
        return None
    data = {k: v for k, v in json.loads(text).items() if k != "type"}
    return Progress(**data)


class JobStore:
    """Thread-safe access to the jobs table.

    Args:
        path: the SQLite file (created with its parent directory).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._specs: dict[str, JobSpec] = {}
        self.writable = True  # False after a write it refused, until one succeeds
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
        for added in ("resume", "handbacks"):  # a store written before the column existed
            if added not in columns:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {added} INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, job_id: str, spec: JobSpec, run_dir: str) -> JobRecord:
        """Insert a QUEUED job atomically.

        Raises:
            JobExists: the id is taken (never overwritten).
            StoreUnavailable: the store refuses writes (nothing was created).
        """
        with self._lock:
            try:
                self._write(
                    "INSERT INTO jobs(job_id, seq, name, state, spec, created_at, run_dir) "
                    "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?, ?, ?, ?)",
                    (
                        job_id,
                        spec.name or "",
                        JobState.QUEUED.value,
                        spec.model_dump_json(),
                        time.time(),
                        run_dir,
                    ),
                )
            except sqlite3.IntegrityError:
                raise JobExists(f"job {clip(job_id)} already exists") from None
            self._specs[job_id] = spec
        return self.get(job_id)

    def exists(self, job_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return row is not None

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            r = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if r is None:
            raise JobNotFound(f"no job {clip(job_id)}")
        return self._record(r)

    def _record(self, r: sqlite3.Row) -> JobRecord:
        """A row as a record; a part that cannot be read is reported, never raised."""
        record = JobRecord(
            job_id=r["job_id"],
            seq=r["seq"],
            name=r["name"],
            state=JobState.QUEUED,
            spec=None,
            created_at=r["created_at"],
            run_dir=r["run_dir"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            error=r["error"],
            attempts=r["attempts"],
            resume=bool(r["resume"]),
            handbacks=r["handbacks"],
        )
        try:
            record.state = JobState(r["state"])
            record.spec = self._spec(r["job_id"], r["spec"])
            record.progress = _decode_progress(r["progress"])
            record.result = JobResult.from_dict(json.loads(r["result"])) if r["result"] else None
        except Exception as exc:  # noqa: BLE001 - an old or hand-edited row fails in many ways
            record.unreadable = f"the stored record cannot be read back: {clip(str(exc), 300)}"
        return record

    def _spec(self, job_id: str, text: str) -> JobSpec:
        """The job's spec, parsed once per process (a stored spec never changes)."""
        spec = self._specs.get(job_id)
        if spec is None:
            spec = JobSpec.model_validate_json(text)
            self._specs[job_id] = spec
        return spec

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
        return [self._record(r) for r in rows]

    def in_states(self, *states: JobState) -> list[JobRecord]:
        """Jobs in ``states``, oldest first (FIFO order)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(states))}) ORDER BY seq",
                [s.value for s in states],
            ).fetchall()
        return [self._record(r) for r in rows]

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
            cur = self._write(
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
            cur = self._write(
                "UPDATE jobs SET state = 'QUEUED', attempts = 0, handbacks = 0, resume = 1, "
                "error = '', finished_at = NULL "
                "WHERE job_id = ? AND state IN ('FAILED', 'CANCELLED')",
                (job_id,),
            )
            if cur.rowcount == 0:
                self._refuse(job_id, "only FAILED or CANCELLED jobs resume")
        return self.get(job_id)

    def _refuse(self, job_id: str, why: str) -> None:
        """Raise why a state change did not happen (the caller holds the lock)."""
        r = self._db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if r is None:
            raise JobNotFound(f"no job {clip(job_id)}")
        raise TerminalState(f"job {clip(job_id)} is {r['state']}; {why}")

    def update(self, job_id: str, **fields: Any) -> None:
        """Update non-state fields (progress) of a job that is not terminal; a no-op otherwise."""
        enc = _encode(fields)
        with self._lock:
            self._write(
                f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in enc)} "
                f"WHERE job_id = ? AND state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')",
                [*enc.values(), job_id],
            )

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._write("DELETE FROM jobs WHERE job_id = ?", (job_id,))
            self._specs.pop(job_id, None)

    def _write(self, sql: str, params) -> sqlite3.Cursor:
        """One write (the caller holds the lock).

        Raises:
            StoreUnavailable: the store refuses writes (nothing was changed).
        """
        try:
            cursor = self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise self._unwritable(exc) from None
        self.writable = True
        return cursor

    def _unwritable(self, exc: sqlite3.OperationalError) -> StoreUnavailable:
        self.writable = False
        return StoreUnavailable(
            f"the job store ({self.path}) refuses writes: {exc}; nothing was changed — retry "
            "once it accepts writes again"
        )


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    encoded = dict(fields)
    for key in ("progress", "result"):
        value = encoded.get(key)
        if value is not None and hasattr(value, "to_dict"):
            encoded[key] = json.dumps(value.to_dict(), default=str)
    if isinstance(encoded.get("state"), JobState):
        encoded["state"] = encoded["state"].value
    return encoded
