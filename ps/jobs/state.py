"""Job states and the rule that terminal states are final."""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    """The lifecycle of a job: QUEUED → STARTING → RUNNING → SUCCEEDED | FAILED | CANCELLED."""

    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
