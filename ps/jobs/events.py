"""The events of a job, typed: what the supervisor emits and the manager relays.

Every event is a frozen dataclass with a ``kind`` (the ``type`` of its ``metrics.jsonl`` line).
``ps/api/convert.py`` is the only place that maps them to protobuf messages.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ps.jobs.state import JobState


@dataclass(frozen=True, kw_only=True)
class Event:
    """Common to every event: which job, and when (seconds since the epoch)."""

    kind: ClassVar[str] = "event"
    job_id: str = ""
    time: float = 0.0
    member: int | None = None  # an ensemble member's event: its number

    def to_dict(self) -> dict[str, Any]:
        """Plain data with the kind as ``type`` (a ``metrics.jsonl`` line)."""
        data = {"type": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str)


@dataclass(frozen=True, kw_only=True)
class StateChanged(Event):
    """The job moved to ``state``; on RUNNING, the step accounting of this attempt."""

    kind: ClassVar[str] = "state"
    state: JobState
    total_steps: int = 0
    start_step: int = 0
    steps_per_epoch: int = 0
    n_params: int = 0


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    """Training progress (at most a few per second)."""

    kind: ClassVar[str] = "progress"
    step: int
    total_steps: int
    epoch: float
    train_loss: float | None = None
    samples: int = 0
    samples_per_s: float = 0.0
    grad_norm: float | None = None
    layer_grad_norms: dict[str, float] | None = None


@dataclass(frozen=True, kw_only=True)
class Evaluation(Event):
    """The parameters at ``step`` evaluated on the training and validation splits (AUC for
    ``bce`` losses, whose loss is the log loss)."""

    kind: ClassVar[str] = "evaluation"
    step: int
    epoch: float
    learning_rate: float
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    generalization_gap: float | None = None
    elapsed_s: float = 0.0
    train_auc: float | None = None
    val_auc: float | None = None


@dataclass(frozen=True)
class Figures:
    """A job's cumulative figures for Prometheus (snapshots: a lost one skews nothing)."""

    steps: int
    samples: int
    learning_rate: float | None
    workers: dict[str, int]
    worker_restarts: int
    restores: int
    rejected: dict[str, int]
    bytes_pushed: int
    bytes_pulled: int
    histograms: dict[str, dict[str, Any]]
    links: dict[str, int] = field(default_factory=dict)  # worker-shard links by kind
    table_rows: int = 0  # embedding rows the shards hold
    rows_pushed: int = 0  # row gradients received by the shards
    sparse_bytes_pushed: int = 0
    sparse_bytes_pulled: int = 0
    rows_admitted: int = 0  # table rows created (ps/server/lifecycle.py)
    rows_evicted: int = 0
    rows_expired: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Telemetry(Event):
    kind: ClassVar[str] = "telemetry"
    figures: Figures


@dataclass(frozen=True, kw_only=True)
class Restored(Event):
    """Every actor was recreated from the checkpoint at ``step`` (a shard was lost)."""

    kind: ClassVar[str] = "restore"
    step: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class WorkerReplaced(Event):
    """Worker ``worker`` died and a replacement resumes at ``step``."""

    kind: ClassVar[str] = "worker_restart"
    worker: int
    step: int
    reason: str


@dataclass(frozen=True)
class JobResult:
    """The final figures of a succeeded job (``result.json``).

    ``steps`` equals ``total_steps`` unless ``stop_reason`` says why not: ``early_stopping``, or
    ``rejected_gradients`` (``skipped_updates`` updates were skipped because every gradient of
    them was non-finite).
    """

    job_id: str
    name: str | None
    stop_reason: str
    steps: int
    total_steps: int
    epochs: float
    exported_step: int
    best_step: int | None
    wall_time_s: float
    samples: int
    samples_per_s: float
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    test_loss: float | None
    test_accuracy: float | None
    final_evaluation: dict[str, Any] | None
    n_params: int
    skipped_updates: int = 0
    rejected_gradients: dict[str, int] = field(default_factory=dict)
    staleness: dict[int, int] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    worker_restarts: int = 0
    restores: int = 0
    shards: list[dict[str, Any]] = field(default_factory=list)
    curves_error: str | None = None
    export_error: str | None = None
    train_auc: float | None = None
    val_auc: float | None = None
    test_auc: float | None = None
    table_rows: int = 0
    members: list[dict[str, Any]] = field(default_factory=list)  # an ensemble's members' results

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        """Read back a stored result (keys this version does not know are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["staleness"] = {int(k): n for k, n in values.get("staleness", {}).items()}
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class Finished(Event):
    """The job succeeded with ``result`` (the supervisor's last event of a job that
    succeeded; :class:`JobEnded` is the manager's, for any end)."""

    kind: ClassVar[str] = "succeeded"
    result: JobResult


@dataclass(frozen=True, kw_only=True)
class JobEnded(Event):
    """The job reached a terminal state; ``job`` is its final record (the manager's last
    event to watchers)."""

    kind: ClassVar[str] = "ended"
    job: Any  # a ps.jobs.store.JobRecord (not imported: the store imports this module)


HISTORY_KINDS = (Progress, Evaluation, Restored, WorkerReplaced)
"""The events kept in ``metrics.jsonl``."""
