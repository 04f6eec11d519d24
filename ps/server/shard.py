"""The parameter-server shard: a contiguous slice of the flat parameters and its optimizer.

:class:`ShardCore` is the pure, testable logic (no Ray, no sockets); the Ray actor around it and
its data-plane channels are in :mod:`ps.server.actor` and :mod:`ps.server.channels`.

A push goes: malformed? refuse (nothing changes) → duplicate ``(worker, seq)``? ignore →
past the job's ``max_steps``? refuse → non-finite (the slice, its rows, or the worker's global
norm)? reject and count → gate bookkeeping → (sync: accumulate until all N workers of the step
have pushed, then average, :mod:`ps.server.sync`) → ``optimizer.step`` in place →
``version += 1``.

The core sees arrays only: mapping a worker's shared memory is the channel layer's
(:mod:`ps.server.shared`).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import torch

from ps.optim import Optimizer
from ps.protocol.compression import decompress_into, payload_nbytes, payload_shape
from ps.protocol.messages import PullReply, Push, RowsPush, RowsRequest, Status
from ps.server.config import ShardConfig, ShardStats
from ps.server.dense import DenseSlice, all_finite
from ps.server.gate import ClockGate
from ps.server.handoff import HandOff
from ps.server.sync import SyncStep
from ps.server.tables import ShardTables


class ShardCore:
    """One shard's dense slice, tables, gate, sync step and counters.

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
        if np.shape(params) != (config.size,):
            raise ValueError(
                f"shard {self.index}: {np.size(params)} parameters, expected {config.size}"
            )
        self.gate = ClockGate.for_mode(config.mode, config.workers, config.staleness)
        dense_sync, tables_sync = config.mode == "sync", config.tables.mode == "sync"
        keep_before = config.shards > 1
        self.sync = SyncStep(self.gate, keep_before) if dense_sync or tables_sync else None
        self.dense = DenseSlice(
            params,
            buffers,
            config.buffers,
            Optimizer(config.optimizer, config.regularization),
            dense_sync,
            keep_before and dense_sync,
            config.shards,
        )
        self.tables = ShardTables(config.tables, self.gate, self.sync, eval_keys)
        self.stopped = config.max_version == 0
        self.last_seq = [0] * config.workers
        self.handoff = HandOff()
        self.snapshots: dict[int, dict[str, Any]] = {}
        self.nonfinite_in_a_row = 0
        self.diverged: str | None = None
        self.skipped = 0
        self.rejected: Counter[str] = Counter()  # non-finite or duplicate: worth a look
        self.after_stop = 0  # pushes that arrived once the shard had stopped
        self.staleness: Counter[int] = Counter()
        self.version_lag: Counter[int] = Counter()
        self.traffic = {"bytes_pushed": 0, "bytes_pulled": 0}

    @property
    def version(self) -> int:
        return self.dense.version

    @property
    def params(self) -> torch.Tensor:
        return self.dense.params

    @property
    def lr(self) -> float:
        return self.dense.lr

    # -- the checkpoint layout of a shard ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a restored shard continues from (copies; plain tensors and lists)."""
        return {
            **self.dense.state_dict(),
            "clocks": list(self.gate.clocks),
            "last_seq": list(self.last_seq),
            "skipped": self.skipped,
            "sync": self.sync.state_dict() if self.sync else {},
            "tables": self.tables.state_dict(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` output (a checkpoint).

        Raises:
            ValueError: the saved slice has another size or another optimizer.
        """
        self.dense.load_state_dict(saved, f"shard {self.index}")
        self.gate.clocks = [int(c) for c in saved["clocks"]]
        self.last_seq = [int(c) for c in saved["last_seq"]]
        self.skipped = int(saved.get("skipped", 0))
        if self.sync:
            self.sync.load_state_dict(saved.get("sync", {}))
        if self.tables:
            self.tables.load_state_dict(saved.get("tables", {}))
        max_version = self.config.max_version
        self.stopped = max_version is not None and self.version >= max_version

    # -- reads -------------------------------------------------------------------------------
    def may_pull(self, clock: int) -> bool:
        if self.stopped:
            return True
        return (
            self.handoff.allows(clock) and self.gate.may_pull(clock) and self.tables.may_pull(clock)
        )

    def read(self, clock: int, rows: list[RowsRequest] | tuple = ()) -> PullReply:
        """What a worker at ``clock`` computes its next gradient from, and the embedding rows
        ``rows``. ``params`` and ``buffers`` are the shard's live tensors' arrays: the caller
        copies them (into its reply or a worker's shared buffer) before releasing the lock.

        In sync mode a worker replaced mid-push replays a step that some shards already finished
        and others did not: those shards answer with the state from before that step
        (:mod:`ps.server.sync`), so the replayed gradient is the original one.
        """
        if self.stopped:
            return PullReply(stop=True, version=self.version)
        before = self.dense.sync and self.sync.reads_before(clock, "parameters")
        params, buffers, version = self.dense.view(before)
        min_clock = clock if before else self.gate.min_clock
        self.traffic["bytes_pulled"] += (params.numel() + buffers.numel()) * 4
        values = self.tables.read(clock, rows) if rows else []
        return PullReply(False, version, min_clock, params.numpy(), buffers.numpy(), values)

    # -- writes ------------------------------------------------------------------------------
    def push(
        self,
        push: Push,
        grad: Any,
        buffers: np.ndarray | None = None,
        rows: list[RowsPush] | tuple = (),
    ) -> Status:
        """Offer a worker's gradient: ``grad`` is a float32 array of the slice or a compressed
        payload, ``buffers`` the values of the model's buffers this shard keeps, ``rows`` its
        embedding-row gradients for this shard's rows (accepted or rejected with the dense
        gradient).

        Raises:
            ValueError: a malformed push (its sequence number stays unused).
        """
        shape = payload_shape(grad)
        if shape != tuple(self.params.shape):
            raise ValueError(
                f"shard {self.index}: gradient of shape {shape}, expected {tuple(self.params.shape)}"
            )
        rows_finite = self.tables.check(rows) if rows else True
        worker, seq = push.worker, push.seq
        if seq <= self.last_seq[worker]:
            self.rejected["duplicate"] += 1
            return Status.DUPLICATE
        self.last_seq[worker] = seq
        self.traffic["bytes_pushed"] += payload_nbytes(grad)
        if not isinstance(grad, np.ndarray):  # a compressed payload: expand it
            grad = decompress_into(grad, self.dense.grad_buf.numpy())
        if self.stopped:
            self.gate.tick(worker, seq)
            self.after_stop += 1  # the step in flight when training ended: no rejection
            return Status.STOPPED
        finite = _finite_norm(push.grad_norm) and all_finite(grad) and rows_finite
        self._count(push, finite)
        status = self._take(push, grad, buffers, rows, finite)
        if self.handoff.reached(self.last_seq):
            self._stop_for_handoff()
        return status

    def _take(self, push: Push, grad, buffers, rows, finite: bool) -> Status:
        """Gate bookkeeping, then accumulate (sync) or apply (async / ssp)."""
        self.dense.take_buffers(buffers)
        if self.sync:
            self.sync.take(finite)
        self.tables.take(rows, finite)
        if finite and self.dense.sync:
            self.dense.accumulate(grad, push.grad_norm or 0.0)
        self.gate.tick(push.worker, push.seq)
        status = Status.ACCUMULATED if finite else Status.REJECTED
        while self.sync and self.sync.due:
            status = self._finish_sync_step()
        if self.dense.sync:
            return status
        if not finite:
            self.skipped += 1
            return Status.REJECTED
        self.dense.apply_now(grad, push.grad_norm)
        self._updated()
        return Status.APPLIED

    def _finish_sync_step(self) -> Status:
        count = self.sync.finish()
        self.tables.finish_step(count)  # before the dense update: its capture includes the rows
        if not self.dense.sync:
            return Status.ACCUMULATED
        if not self.dense.finish_step(count):  # every gradient of this step was rejected
            self.skipped += 1
            return Status.REJECTED
        self._updated()
        return Status.APPLIED

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

    def _updated(self) -> None:
        """After an update: stop at the last step, capture what is due at this version."""
        max_version = self.config.max_version
        if max_version is not None and self.version >= max_version:
            self.stopped = True
        v, cfg = self.version, self.config
        eval_due = bool(cfg.snapshot_every) and v % cfg.snapshot_every == 0
        ckpt_due = bool(cfg.checkpoint_every) and v % cfg.checkpoint_every == 0
        if not (eval_due or ckpt_due):
            return
        snap: dict[str, Any] = {
            "version": v,
            "params": self.params.numpy().copy(),
            "buffers": self.dense.buffers.numpy().copy(),
            "lr": self.lr,
        }
        if ckpt_due:
            snap["state"] = self.state_dict()
        if eval_due and self.tables:
            snap["rows"] = self.tables.capture()
        self.snapshots[v] = snap

    # -- control -----------------------------------------------------------------------------
    def worker_clock(self, worker: int) -> int:
        """The last step of ``worker`` this shard has seen (a replacement resumes after it)."""
        return self.last_seq[worker]

    def take_snapshot(self, version: int) -> dict[str, Any] | None:
        return self.snapshots.pop(version, None)

    def stop(self) -> None:
        self.stopped = True

    # -- handing the job back: stop where a checkpoint is whole ------------------------------
    def hold(self) -> int | None:
        """The first step of stopping to hand the job back (:mod:`ps.server.handoff`): returns
        the step this shard can stop after, or None when it stopped at once (no step of
        several pushes is in progress outside sync mode, so its state now is whole)."""
        if self.stopped:
            return None
        if self.sync is None:
            self._stop_for_handoff()
            return None
        return self.handoff.hold(max(self.last_seq) + 1)

    def stop_after(self, step: int) -> None:
        """The second: stop once every worker has pushed ``step`` (the largest of the
        shards' :meth:`hold` answers), and not before."""
        if self.stopped:
            return
        self.handoff.stop_after(step)
        if self.handoff.reached(self.last_seq):
            self._stop_for_handoff()

    def _stop_for_handoff(self) -> None:
        self.handoff.state = {"version": self.version, "state": self.state_dict()}
        self.stopped = True

    def checkpoint(self) -> dict[str, Any]:
        """``{"version", "state"}`` where a hand-back stopped this shard (pushes refused after
        it are not in it), else as it is now."""
        return self.handoff.state or {"version": self.version, "state": self.state_dict()}

    def final(self) -> dict[str, Any]:
        """Parameters and version at the end of training."""
        return {
            "version": self.version,
            "params": self.params.numpy().copy(),
            "buffers": self.dense.buffers.numpy().copy(),
            "rows": self.tables.items(),
        }

    def lookup_rows(self, clock: int, table: int, keys: np.ndarray) -> np.ndarray:
        """Rows of ``table`` for a worker at ``clock`` (a module's read outside the pull)."""
        return self.tables.read(clock, [RowsRequest(table, np.asarray(keys, dtype=np.int64))])[0]

    def stats(self) -> ShardStats:
        return ShardStats(
            index=self.index,
            size=self.config.size,
            version=self.version,
            lr=self.lr,
            rejected=dict(self.rejected),
            after_stop=self.after_stop,
            staleness=dict(self.staleness),
            version_lag=dict(self.version_lag),
            clocks=list(self.gate.clocks),
            update_hist=self.dense.update_hist.to_dict(),
            diverged=self.diverged,
            skipped_updates=self.skipped,
            **self.dense.timing,
            **self.traffic,
            **self.tables.stats(),
        )


def _finite_norm(norm: float | None) -> bool:
    return norm is None or math.isfinite(norm)
