"""The parameter-server shard: a contiguous slice of the flat parameters and its optimizer.

:class:`ShardCore` is the pure, testable logic (no Ray, no sockets); the Ray actor around it and
its data-plane channels are in :mod:`ps.server.actor` and :mod:`ps.server.channels`.

A push goes: duplicate ``(worker, seq)``? ignore → non-finite (the slice, or the worker's global
norm)? reject and count → past the job's ``max_steps``? refuse → gate bookkeeping → (sync:
accumulate until all N workers of the step have pushed, then average) → ``optimizer.step`` in
place → ``version += 1``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ps.metrics import LATENCY_BUCKETS, Buckets
from ps.optim import Optimizer, resolve_optimizer, resolve_regularization
from ps.server.gate import ClockGate
from ps.server.tables import RowsPush, RowsRequest, ShardTables, TablesConfig
from workers import shm
from workers.compression import decompress_into, payload_nbytes, payload_shape

APPLIED, ACCUMULATED, DUPLICATE, REJECTED, STOPPED = (
    "applied",
    "accumulated",
    "duplicate",
    "rejected",
    "stopped",
)


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
    optimizer: dict[str, Any]
    regularization: dict[str, Any]
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
        optimizer: dict[str, Any],
        regularization: dict[str, Any] | None = None,
        total_steps: int | None = None,
        **fields: Any,
    ) -> ShardConfig:
        """A config with the optimizer sections resolved (schedule ``t_max`` = total steps)."""
        return cls(
            index=index,
            optimizer=resolve_optimizer(optimizer, total_steps),
            regularization=resolve_regularization(regularization),
            **fields,
        )


@dataclass(frozen=True)
class Push:
    """The metadata of one gradient push (the gradient itself travels beside it).

    Attributes:
        worker: the pushing worker's index.
        seq: the worker's gradient number, 1-based (its clock after the push).
        base_version: the shard version its parameters were read at.
        base_min_clock: the slowest worker's clock when they were read (for staleness).
        grad_norm: the global L2 norm of the whole gradient (clipping across shards; a
            non-finite norm makes every shard reject the gradient alike).
    """

    worker: int
    seq: int
    base_version: int = 0
    base_min_clock: int = 0
    grad_norm: float | None = None


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
    channels: dict[str, int] = field(default_factory=dict)  # connections by kind (shm, stream)
    pid: int = 0
    table_rows: int = 0  # embedding rows this shard holds
    table_bytes: int = 0
    rows_pushed: int = 0
    rows_pulled: int = 0
    sparse_bytes_pushed: int = 0
    sparse_bytes_pulled: int = 0

    def summary(self) -> dict[str, Any]:
        """The figures result.json keeps per shard (histograms aside)."""
        return {k: v for k, v in vars(self).items() if k not in ("staleness", "version_lag")}


class ShardCore:
    """One shard's parameters, optimizer state, version, gate and counters.

    Args:
        config: see :class:`ShardConfig`.
        params: its initial slice of the flat parameters (copied).
        buffers: the model's initial float buffers (shard 0).
        eval_keys: per table, the keys of this shard that evaluations read.
    """

    def __init__(
        self,
        config: ShardConfig,
        params: np.ndarray | torch.Tensor,
        buffers: np.ndarray | None = None,
        eval_keys: dict[int, np.ndarray] | None = None,
    ) -> None:
        self.config = config
        self.index = config.index
        self.params = torch.as_tensor(np.array(params, dtype=np.float32, copy=True))
        if self.params.shape != (config.size,):
            raise ValueError(
                f"shard {self.index}: {self.params.numel()} parameters, expected {config.size}"
            )
        self.buffers = torch.zeros(config.buffers)
        if buffers is not None:
            self.buffers.copy_(torch.from_numpy(np.array(buffers, dtype=np.float32)))
        self._buffer_sum = torch.zeros(config.buffers)
        self._buffer_count = 0
        self.optimizer = Optimizer(config.optimizer, config.regularization)
        self.state = self.optimizer.init(self.params)
        self.gate = ClockGate.for_mode(config.mode, config.workers, config.staleness)
        self.tables = ShardTables(config.tables, config.workers, config.shards > 1, eval_keys)
        self.version = 0
        self.stopped = config.max_version == 0
        self.last_seq = [0] * config.workers
        self.snapshots: dict[int, dict[str, Any]] = {}
        self.grad_buf = torch.empty_like(self.params)
        # sync: the running sum of this step's gradients, how many, and their global norms.
        self._acc = torch.zeros_like(self.params) if config.mode == "sync" else None
        # sync with several shards: the parameters before the latest step, for a replaced worker
        # replaying a step that this shard already finished (see read()).
        replays = config.mode == "sync" and config.shards > 1
        self._before_step = torch.empty_like(self.params) if replays else None
        self._buffers_before_step = self.buffers.clone()
        self._acc_count = 0
        self._acc_norms = 0.0
        self._sync_steps = 0
        self._version_before_step = 0
        self._shm: dict[str, np.ndarray] = {}  # a worker's shared buffer name -> this slice of it
        self.nonfinite_in_a_row = 0
        self.diverged: str | None = None
        self.skipped = 0
        self.rejected: Counter[str] = Counter()
        self.staleness: Counter[int] = Counter()
        self.version_lag: Counter[int] = Counter()
        self.lr = self.optimizer.lr_at(0)
        self.timing = {"update_seconds": 0.0, "updates": 0, "bytes_pushed": 0, "bytes_pulled": 0}
        self.update_hist = Buckets(LATENCY_BUCKETS)

    # -- the checkpoint layout of a shard ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a restored shard continues from (copies; plain tensors and lists)."""
        opt = self.optimizer.state_dict(self.state)
        return {
            "version": self.version,
            "params": self.params.clone(),
            "optimizer": {**opt, "tensors": {k: t.clone() for k, t in opt["tensors"].items()}},
            "clocks": list(self.gate.clocks),
            "last_seq": list(self.last_seq),
            "skipped": self.skipped,
            "buffers": self.buffers.clone(),
            "tables": self.tables.state_dict(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` output (a checkpoint).

        Raises:
            ValueError: the saved slice has another size or another optimizer.
        """
        params = torch.as_tensor(np.asarray(saved["params"], dtype=np.float32))
        if params.shape != self.params.shape:
            raise ValueError(
                f"shard {self.index}: checkpoint has {params.numel()} floats, "
                f"not {self.params.numel()}"
            )
        self.params.copy_(params)
        self.state = self.optimizer.load_state_dict(saved["optimizer"])
        self.version = int(saved["version"])
        self.gate.clocks = [int(c) for c in saved["clocks"]]
        self.last_seq = [int(c) for c in saved["last_seq"]]
        self.skipped = int(saved.get("skipped", 0))
        if "buffers" in saved:
            self.buffers.copy_(torch.as_tensor(saved["buffers"]))
        self._sync_steps = self.gate.min_clock
        if self.tables:
            self.tables.load_state_dict(saved.get("tables", {}), self.gate.clocks)
        self.lr = self.optimizer.lr_at(self.state.step)
        max_version = self.config.max_version
        self.stopped = max_version is not None and self.version >= max_version

    # -- reads -------------------------------------------------------------------------------
    def may_pull(self, clock: int) -> bool:
        return self.stopped or (self.gate.may_pull(clock) and self.tables.may_pull(clock))

    def read(
        self, clock: int, shm_params: str | None = None, rows: list[RowsRequest] | None = None
    ) -> dict[str, Any]:
        """The parameters a worker at ``clock`` computes its next gradient from: a copy in the
        reply (the reader may hold it while updates continue), or, given a worker's shared
        parameter buffer on this node, copied straight into it. ``rows``: embedding rows to
        read as well (``reply["rows"]``, one array per request).

        In sync mode a worker replaced mid-push replays a step that some shards already finished
        (its push reached them before it died) and others did not: those shards answer with
        the parameters from before that step, so the replayed gradient is the original one.
        """
        if self.stopped:
            return {"stop": True, "version": self.version}
        params, buffers = self.params, self.buffers
        version, min_clock = self.version, self.gate.min_clock
        if self.config.mode == "sync" and self._sync_steps > clock:
            if self._before_step is None or self._sync_steps != clock + 1:
                raise RuntimeError(
                    f"shard {self.index}: a worker at step {clock} asked for parameters this "
                    f"shard left behind at step {self._sync_steps}"
                )
            params, buffers = self._before_step, self._buffers_before_step
            version, min_clock = self._version_before_step, clock
        self.timing["bytes_pulled"] += (params.numel() + buffers.numel()) * 4
        reply = {"stop": False, "version": version, "min_clock": min_clock}
        if rows:
            reply["rows"] = self.tables.read(clock, rows)
        if shm_params is None:
            reply["params"] = params.numpy().copy()
            reply["buffers"] = buffers.numpy().copy()
        else:
            np.copyto(self._shared(shm_params), params.numpy())
            np.copyto(self._shared_buffers(shm_params), buffers.numpy())
        return reply

    def _mapped(self, name: str) -> np.ndarray:
        """A worker's whole shared buffer (mapped once)."""
        whole = self._shm.get(name)
        if whole is None:
            if len(self._shm) > 4 * self.config.workers:  # replaced workers' buffers: drop maps
                self._shm.clear()
            whole = self._shm[name] = shm.attach(name)
        return whole

    def _shared(self, name: str) -> np.ndarray:
        """This shard's slice of a worker's shared buffer."""
        lo = self.config.offset
        return self._mapped(name)[lo : lo + self.config.size]

    def _shared_buffers(self, name: str) -> np.ndarray:
        """This shard's buffers in a worker's shared buffer (empty for all but shard 0)."""
        lo = self.config.buffer_offset
        return self._mapped(name)[lo : lo + self.config.buffers]

    # -- writes ------------------------------------------------------------------------------
    def push(
        self,
        push: Push,
        grad: Any = None,
        shm_grads: str | None = None,
        buffers: np.ndarray | None = None,
        rows: list[RowsPush] | None = None,
    ) -> str:
        """Offer a worker's gradient: ``grad`` is a float32 array or a compressed payload; with
        ``shm_grads`` it is read from that shared buffer of the worker (its slice, in place),
        and so are its buffers' values (else ``buffers``). ``rows``: its embedding-row gradients
        for this shard's rows (accepted or rejected with the dense gradient).

        Returns one of ``applied``, ``accumulated`` (sync, waiting for the step's other workers),
        ``duplicate``, ``rejected`` (non-finite), ``stopped``.
        """
        worker, seq = push.worker, push.seq
        if seq <= self.last_seq[worker]:
            self.rejected["duplicate"] += 1
            return DUPLICATE
        self.last_seq[worker] = seq
        if shm_grads is not None:
            grad, buffers = self._shared(shm_grads), self._shared_buffers(shm_grads)
        shape = payload_shape(grad)
        if shape != tuple(self.params.shape):
            raise ValueError(
                f"shard {self.index}: gradient of shape {shape}, expected {tuple(self.params.shape)}"
            )
        self.timing["bytes_pushed"] += payload_nbytes(grad)
        buffered = not isinstance(grad, np.ndarray)
        if buffered:  # a compressed payload: expand it into the dense scratch buffer
            grad = decompress_into(grad, self.grad_buf.numpy())
        if self.stopped:
            self.gate.tick(worker, seq)
            self.tables.gate.tick(worker, seq)
            self.rejected["stopped"] += 1
            return STOPPED
        rows_finite = self.tables.check(rows) if rows else True
        finite = _finite_norm(push.grad_norm) and _all_finite(grad) and rows_finite
        self._count(push, finite)
        self._take_buffers(buffers)
        self.gate.tick(worker, seq)
        if self.tables:  # the tables' step ends before the dense one (captures include it)
            self.tables.take(rows or [], finite)
            self.tables.tick(worker, seq)
        if self.config.mode == "sync":
            if finite:
                self._accumulate(grad, push.grad_norm or 0.0)
            if self.gate.min_clock > self._sync_steps:
                return self._finish_sync_step()
            return ACCUMULATED if finite else REJECTED
        if not finite:
            self.skipped += 1
            return REJECTED
        if not buffered:
            np.copyto(self.grad_buf.numpy(), grad)
        self._apply(self.grad_buf, push.grad_norm if self.config.shards > 1 else None)
        return APPLIED

    def _accumulate(self, grad: np.ndarray, norm: float) -> None:
        """Add one worker's gradient to the sync step's sum."""
        if self._acc_count == 0:  # the step's first gradient: no zeroing, no addition
            np.copyto(self._acc.numpy(), grad)
        else:
            np.add(self._acc.numpy(), grad, out=self._acc.numpy())
        self._acc_count += 1
        self._acc_norms += norm

    def _take_buffers(self, values: np.ndarray | None) -> None:
        """A worker's buffers: summed for the sync step's average, or (async) the latest."""
        if not self.config.buffers or values is None or not _all_finite(values):
            return
        if self.config.mode == "sync":
            np.add(self._buffer_sum.numpy(), values, out=self._buffer_sum.numpy())
            self._buffer_count += 1
        else:
            np.copyto(self.buffers.numpy(), values)

    def _count(self, push: Push, finite: bool) -> None:
        if finite:
            self.nonfinite_in_a_row = 0
            self.staleness[max(0, push.seq - 1 - push.base_min_clock)] += 1
            self.version_lag[self.version - push.base_version] += 1
            return
        self.rejected["non_finite"] += 1
        self.nonfinite_in_a_row += 1
        threshold = self.config.divergence_threshold
        if threshold and self.nonfinite_in_a_row >= threshold:
            self.diverged = (
                f"diverged: {self.nonfinite_in_a_row} non-finite gradients in a row at shard "
                f"{self.index}, step {self.version}"
            )
            self.stopped = True

    def _finish_sync_step(self) -> str:
        self._sync_steps += 1
        if self._before_step is not None:
            self._before_step.copy_(self.params)
            self._buffers_before_step.copy_(self.buffers)
            self._version_before_step = self.version
        if self._buffer_count:
            torch.div(self._buffer_sum, self._buffer_count, out=self.buffers)
            self._buffer_sum.zero_()
            self._buffer_count = 0
        if self._acc_count == 0:  # every gradient of this step was rejected: skip the update
            self.skipped += 1
            return REJECTED
        count = self._acc_count
        if count > 1:
            self._acc.div_(count)
        # With several shards the averaged gradient's global norm is unknown here; the mean of
        # the workers' norms bounds it from above (triangle inequality), so clipping is safe.
        norm = self._acc_norms / count if self.config.shards > 1 else None
        self._acc_count, self._acc_norms = 0, 0.0
        self._apply(self._acc, norm)
        return APPLIED

    def _apply(self, grad: torch.Tensor, norm: float | None) -> None:
        t0 = time.perf_counter()
        self.lr = self.optimizer.step(self.params, grad, self.state, grad_norm=norm)
        elapsed = time.perf_counter() - t0
        self.timing["update_seconds"] += elapsed
        self.update_hist.observe(elapsed)
        self.timing["updates"] += 1
        self.version += 1
        max_version = self.config.max_version
        if max_version is not None and self.version >= max_version:
            self.stopped = True
        self._capture()

    def _capture(self) -> None:
        v, cfg = self.version, self.config
        eval_due = bool(cfg.snapshot_every) and v % cfg.snapshot_every == 0
        ckpt_due = bool(cfg.checkpoint_every) and v % cfg.checkpoint_every == 0
        if not (eval_due or ckpt_due):
            return
        snap: dict[str, Any] = {
            "version": v,
            "params": self.params.numpy().copy(),
            "buffers": self.buffers.numpy().copy(),
            "lr": self.lr,
        }
        if ckpt_due:
            snap["state"] = self.state_dict()
        if eval_due and self.tables:
            snap["rows"] = self.tables.capture()
        self.snapshots[v] = snap

    def worker_clock(self, worker: int) -> int:
        """The last step of ``worker`` this shard has seen (a replacement resumes after it)."""
        return self.last_seq[worker]

    def take_snapshot(self, version: int) -> dict[str, Any] | None:
        return self.snapshots.pop(version, None)

    def stop(self) -> None:
        self.stopped = True

    def final(self) -> dict[str, Any]:
        """Parameters and version at the end of training."""
        return {
            "version": self.version,
            "params": self.params.numpy().copy(),
            "buffers": self.buffers.numpy().copy(),
            "rows": self.tables.items(),
        }

    def lookup_rows(self, clock: int, table: int, keys: np.ndarray) -> np.ndarray:
        """Rows of ``table`` for a worker at ``clock`` (a module's read outside the pull)."""
        return self.tables.read(clock, [(table, np.asarray(keys, dtype=np.int64))])[0]

    def stats(self) -> ShardStats:
        return ShardStats(
            index=self.index,
            size=self.config.size,
            version=self.version,
            lr=self.lr,
            rejected=dict(self.rejected),
            staleness=dict(self.staleness),
            version_lag=dict(self.version_lag),
            clocks=list(self.gate.clocks),
            update_hist=self.update_hist.to_dict(),
            diverged=self.diverged,
            skipped_updates=self.skipped,
            **self.timing,
            **self.tables.stats(),
        )


def _finite_norm(norm: float | None) -> bool:
    return norm is None or math.isfinite(norm)


def _all_finite(grad: np.ndarray) -> bool:
    # One cheap float32 reduction first: a finite sum implies every element is finite (a NaN or
    # an infinity makes it non-finite); only an overflowing or non-finite sum needs the exact
    # per-element check.
    total = torch.from_numpy(grad).sum() if grad.flags.writeable else grad.sum()
    if np.isfinite(float(total)):
        return True
    return bool(np.isfinite(grad).all())
