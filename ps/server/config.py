"""What a shard is told (:class:`ShardConfig`) and what it reports (:class:`ShardStats`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ps.optim import resolve_optimizer, resolve_regularization
from ps.optim.config import OptimizerConfig, RegularizationConfig
from ps.server.tables import TablesConfig


@dataclass(frozen=True)
class ShardConfig:
    """Everything a shard needs to know, built once by the supervisor from the spec and plan.

    Attributes:
        index / shards: this shard's number and how many there are.
        offset / size: its slice ``[offset, offset + size)`` of the flat parameters.
        optimizer / regularization: the spec's resolved sections (schedule ``t_max`` filled).
        mode / workers / staleness: the job's consistency setting.
        max_version: stop after this many updates (the plan's total steps), or None.
        snapshot_every / checkpoint_every: capture the parameters (and, for checkpoints, the
            whole state) whenever the version reaches a multiple of these.
        divergence_threshold: after this many non-finite gradients in a row the shard stops
            and reports ``diverged``.
        buffers / buffer_offset: the model's float buffers this shard keeps (shard 0 keeps all
            of them; others none) and where they start in the flat state vector. Workers push
            their buffers' values with every gradient: sync steps average them, async keeps the
            latest.
        token: the job's data-plane secret (None: no channels, Ray calls only).
        tables: the model's embedding tables (see :mod:`ps.server.tables`).
    """

    index: int
    offset: int
    size: int
    optimizer: OptimizerConfig
    regularization: RegularizationConfig
    mode: str = "async"
    workers: int = 1
    staleness: int = 0
    shards: int = 1
    max_version: int | None = None
    snapshot_every: int | None = None
    checkpoint_every: int | None = None
    divergence_threshold: int | None = None
    buffers: int = 0
    buffer_offset: int = 0
    token: bytes | None = field(default=None, repr=False)
    tables: TablesConfig = TablesConfig()

    @classmethod
    def make(
        cls,
        index: int,
        optimizer: Mapping[str, Any] | OptimizerConfig,
        regularization: Mapping[str, Any] | RegularizationConfig | None = None,
        total_steps: int | None = None,
        **fields: Any,
    ) -> ShardConfig:
        """A config from optimizer sections as a spec gives them (tests, benchmarks): resolved
        here, the schedule's ``t_max`` set to ``total_steps``. A job's shards get the
        supervisor's resolved optimizer instead (:class:`ps.jobs.resolved.ResolvedJob`)."""
        return cls(
            index=index,
            optimizer=resolve_optimizer(optimizer, total_steps),
            regularization=resolve_regularization(regularization),
            **fields,
        )


@dataclass
class ShardStats:
    """A shard's cumulative figures (the one name for them: stats)."""

    index: int
    size: int
    version: int
    lr: float
    rejected: dict[str, int]
    staleness: dict[int, int]
    version_lag: dict[int, int]
    clocks: list[int]
    update_hist: dict[str, Any]
    diverged: str | None
    skipped_updates: int
    update_seconds: float = 0.0
    updates: int = 0
    bytes_pushed: int = 0
    bytes_pulled: int = 0
    after_stop: int = 0  # gradients that arrived after the shard stopped (not rejections)
    channels: dict[str, int] = field(default_factory=dict)  # connections: shm, unix, tcp
    pid: int = 0
    table_rows: int = 0  # embedding rows this shard holds
    table_bytes: int = 0
    rows_pushed: int = 0
    rows_pulled: int = 0
    sparse_bytes_pushed: int = 0
    sparse_bytes_pulled: int = 0
    rows_admitted: int = 0  # rows created (ids past admission)
    rows_evicted: int = 0  # rows dropped by the row budget
    rows_expired: int = 0  # rows dropped for not being updated in expire_after_steps

    def summary(self) -> dict[str, Any]:
        """The figures result.json keeps per shard (histograms aside)."""
        return {k: v for k, v in vars(self).items() if k not in ("staleness", "version_lag")}
