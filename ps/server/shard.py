"""The parameter-server shard: a contiguous slice of the flat parameters and its optimizer.

:class:`ShardCore` is the pure, testable logic (no Ray); :class:`ParameterShard` is the thin Ray
actor around it that makes pulls wait on the consistency gate.

A push goes: duplicate ``(worker, seq)``? ignore → non-finite? reject and count → past the job's
``max_steps``? refuse → gate bookkeeping → (sync: accumulate until all N workers of the step have
pushed, then average) → ``optimizer.step`` in place → ``version += 1``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Any

import numpy as np
import torch

from ps.metrics import LATENCY_BUCKETS, Buckets
from ps.optim import build
from ps.server.gate import ClockGate
from workers import shm
from workers.compression import decompress_into, payload_nbytes, payload_shape

APPLIED, ACCUMULATED, DUPLICATE, REJECTED, STOPPED = (
    "applied",
    "accumulated",
    "duplicate",
    "rejected",
    "stopped",
)


class ShardCore:
    """One shard's parameters, optimizer state, version, gate and counters.

    Args:
        index: this shard's number.
        params: its initial slice of the flat parameters (copied).
        optimizer / regularization: the spec's sections; ``total_steps`` for schedules.
        mode / workers / staleness / shards: the job's consistency setting and sizes.
        max_version: stop after this many updates (the spec's ``max_steps``), or None.
        snapshot_every / checkpoint_every: capture parameters (and, for checkpoints, the
            optimizer state) whenever the version reaches a multiple of these.
        divergence_threshold: after this many non-finite gradients in a row the shard stops
            and reports ``diverged``.
        restore: a checkpointed shard state (params, optimizer, version, clocks, last_seq) to
            continue from instead of ``params``.
        offset: where this shard's slice starts in a worker's flat buffer (shared-memory path).
    """

    def __init__(
        self,
        index: int,
        params: np.ndarray | torch.Tensor,
        optimizer: dict[str, Any],
        regularization: dict[str, Any],
        total_steps: int | None,
        mode: str,
        workers: int,
        staleness: int = 0,
        shards: int = 1,
        max_version: int | None = None,
        snapshot_every: int | None = None,
        checkpoint_every: int | None = None,
        divergence_threshold: int | None = None,
        restore: dict[str, Any] | None = None,
        offset: int = 0,
    ) -> None:
        self.index = index
        self.params = torch.as_tensor(np.array(params, dtype=np.float32, copy=True))
        self.optimizer = build(optimizer, regularization, total_steps)
        self.state = self.optimizer.init(self.params)
        self.mode = mode
        self.workers = workers
        self.shards = shards
        self.gate = ClockGate.for_mode(mode, workers, staleness)
        self.version = 0
        self.max_version = max_version
        self.stopped = max_version == 0
        self.last_seq = [0] * workers
        self.snapshot_every = snapshot_every
        self.checkpoint_every = checkpoint_every
        self.snapshots: dict[int, dict[str, Any]] = {}
        self.grad_buf = torch.empty_like(self.params)
        # sync: the running sum of this step's gradients, how many, and their global norms.
        self._acc = torch.zeros_like(self.params) if mode == "sync" else None
        self._acc_count = 0
        self._acc_norms = 0.0
        self._sync_steps = 0
        self.offset = offset
        self._shm: dict[str, np.ndarray] = {}  # a worker's shared buffer name -> this slice of it
        self.divergence_threshold = divergence_threshold
        self.nonfinite_in_a_row = 0
        self.diverged: str | None = None
        if restore is not None:
            self._restore(restore)
        self.rejected: Counter[str] = Counter()
        self.staleness: Counter[int] = Counter()
        self.version_lag: Counter[int] = Counter()
        self.lr = self.optimizer.lr_at(0)
        self.timing = {"update_seconds": 0.0, "updates": 0, "bytes_pushed": 0, "bytes_pulled": 0}
        self.update_hist = Buckets(LATENCY_BUCKETS)

    def _restore(self, saved: dict[str, Any]) -> None:
        params = torch.as_tensor(np.asarray(saved["params"], dtype=np.float32))
        if params.shape != self.params.shape:
            raise ValueError(
                f"shard {self.index}: checkpoint has {params.numel()} floats, not {self.params.numel()}"
            )
        self.params.copy_(params)
        self.state = self.optimizer.load_state_dict(saved["optimizer"])
        self.version = int(saved["version"])
        self.gate.clocks = [int(c) for c in saved["clocks"]]
        self.last_seq = [int(c) for c in saved["last_seq"]]
        self._sync_steps = self.gate.min_clock
        self.lr = self.optimizer.lr_at(self.state.step)
        self.stopped = self.max_version is not None and self.version >= self.max_version

    # -- reads -------------------------------------------------------------------------------
    def may_pull(self, clock: int) -> bool:
        return self.stopped or self.gate.may_pull(clock)

    def read(self, shm_params: str | None = None) -> dict[str, Any]:
        """The parameters: a copy in the reply (the reader may hold it while updates continue),
        or, given a worker's shared parameter buffer on this node, copied straight into it."""
        if self.stopped:
            return {"stop": True, "version": self.version}
        self.timing["bytes_pulled"] += self.params.numel() * 4
        reply = {"stop": False, "version": self.version, "min_clock": self.gate.min_clock}
        if shm_params is None:
            reply["params"] = self.params.numpy().copy()
        else:
            np.copyto(self._shared(shm_params), self.params.numpy())
        return reply

    def _shared(self, name: str) -> np.ndarray:
        """This shard's slice of a worker's shared buffer (mapped once)."""
        view = self._shm.get(name)
        if view is None:
            if len(self._shm) > 4 * self.workers:  # replaced workers' buffers: drop stale maps
                self._shm.clear()
            view = shm.attach(name)[self.offset : self.offset + self.params.numel()]
            self._shm[name] = view
        return view

    # -- writes ------------------------------------------------------------------------------
    def push(
        self,
        worker: int,
        seq: int,
        base_version: int,
        base_min_clock: int,
        grad: Any,
        grad_norm: float | None = None,
        shm_grads: str | None = None,
    ) -> str:
        """Offer worker ``worker``'s gradient number ``seq`` (1-based; its clock after the push).

        ``grad`` is a float32 array or a compressed payload; with ``shm_grads`` it is None and the
        gradient is read from that shared buffer of the worker (its slice, in place).

        Returns one of ``applied``, ``accumulated`` (sync, waiting for the step's other workers),
        ``duplicate``, ``rejected`` (non-finite), ``stopped``.
        """
        if seq <= self.last_seq[worker]:
            self.rejected["duplicate"] += 1
            return DUPLICATE
        self.last_seq[worker] = seq
        if shm_grads is not None:
            grad = self._shared(shm_grads)
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
            self.rejected["stopped"] += 1
            return STOPPED
        finite = _all_finite(grad)
        if not finite:
            self.rejected["non_finite"] += 1
            self.nonfinite_in_a_row += 1
            if self.divergence_threshold and self.nonfinite_in_a_row >= self.divergence_threshold:
                self.diverged = (
                    f"diverged: {self.nonfinite_in_a_row} non-finite gradients in a row at shard "
                    f"{self.index}, step {self.version}"
                )
                self.stopped = True
        else:
            self.nonfinite_in_a_row = 0
            self.staleness[max(0, seq - 1 - base_min_clock)] += 1
            self.version_lag[self.version - base_version] += 1
        self.gate.tick(worker, seq)
        if self.mode == "sync":
            if finite:
                np.add(self._acc.numpy(), grad, out=self._acc.numpy())
                self._acc_count += 1
                self._acc_norms += grad_norm or 0.0
            if self.gate.min_clock > self._sync_steps:
                return self._finish_sync_step()
            return ACCUMULATED if finite else REJECTED
        if not finite:
            return REJECTED
        if not buffered:
            np.copyto(self.grad_buf.numpy(), grad)
        self._apply(self.grad_buf, grad_norm if self.shards > 1 else None)
        return APPLIED

    def _finish_sync_step(self) -> str:
        self._sync_steps += 1
        if self._acc_count == 0:  # every gradient of this step was rejected: skip the update
            return REJECTED
        count = self._acc_count
        self._acc.div_(count)
        # With several shards the averaged gradient's global norm is unknown here; the mean of
        # the workers' norms bounds it from above (triangle inequality), so clipping is safe.
        norm = self._acc_norms / count if self.shards > 1 else None
        self._acc_count, self._acc_norms = 0, 0.0
        self._apply(self._acc, norm)
        self._acc.zero_()
        return APPLIED

    def _apply(self, grad: torch.Tensor, norm: float | None) -> None:
        t0 = time.perf_counter()
        self.lr = self.optimizer.step(self.params, grad, self.state, grad_norm=norm)
        elapsed = time.perf_counter() - t0
        self.timing["update_seconds"] += elapsed
        self.update_hist.observe(elapsed)
        self.timing["updates"] += 1
        self.version += 1
        if self.max_version is not None and self.version >= self.max_version:
            self.stopped = True
        self._capture()

    def _capture(self) -> None:
        v = self.version
        eval_due = bool(self.snapshot_every) and v % self.snapshot_every == 0
        ckpt_due = bool(self.checkpoint_every) and v % self.checkpoint_every == 0
        if not (eval_due or ckpt_due):
            return
        snap: dict[str, Any] = {
            "version": v,
            "params": self.params.numpy().copy(),
            "clocks": list(self.gate.clocks),
            "lr": self.lr,
        }
        if ckpt_due:
            opt = self.optimizer.state_dict(self.state)
            snap["optimizer"] = {
                **opt,
                "tensors": {k: t.clone() for k, t in opt["tensors"].items()},
            }
            snap["last_seq"] = list(self.last_seq)
        self.snapshots[v] = snap

    def worker_clock(self, worker: int) -> int:
        """The last step of ``worker`` this shard has seen (a replacement resumes after it)."""
        return self.last_seq[worker]

    def take_snapshot(self, version: int) -> dict[str, Any] | None:
        return self.snapshots.pop(version, None)

    def stop(self) -> None:
        self.stopped = True

    def final(self) -> dict[str, Any]:
        """Parameters and state at the end of training."""
        return {
            "version": self.version,
            "params": self.params.numpy().copy(),
            "optimizer": self.optimizer.state_dict(self.state),
            "clocks": list(self.gate.clocks),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "version": self.version,
            "lr": self.lr,
            "rejected": dict(self.rejected),
            "staleness": dict(self.staleness),
            "version_lag": dict(self.version_lag),
            "clocks": list(self.gate.clocks),
            "update_hist": self.update_hist.to_dict(),
            "diverged": self.diverged,
            **self.timing,
        }


def _all_finite(grad: np.ndarray) -> bool:
    # One cheap reduction first: a finite sum implies every element is finite; only an
    # overflowing or non-finite sum needs the exact per-element check.
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(grad.sum(dtype=np.float64)):
            return True
    return bool(np.isfinite(grad).all())


class ParameterShard:
    """Ray actor around :class:`ShardCore`: pulls wait on the gate without blocking pushes.

    Created by the supervisor as ``ray.remote(ParameterShard).options(...).remote(...)``; an
    asyncio actor, so many waiting pulls cost nothing.
    """

    def __init__(self, num_threads: int = 1, **core: Any) -> None:
        torch.set_num_threads(max(1, num_threads))
        self.core = ShardCore(**core)
        self._changed: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        cond = self._cond()
        async with cond:
            cond.notify_all()

    async def pull(self, worker: int, clock: int, shm_params: str | None = None) -> dict[str, Any]:
        cond = self._cond()
        async with cond:
            await cond.wait_for(lambda: self.core.may_pull(clock))
        return self.core.read(shm_params)

    async def push(
        self, worker, seq, base_version, base_min_clock, grad, grad_norm=None, shm_grads=None
    ) -> str:
        status = self.core.push(
            worker, seq, base_version, base_min_clock, grad, grad_norm, shm_grads
        )
        await self._notify()
        return status

    def node(self) -> str:
        """The Ray node this shard runs on (workers on the same node use shared memory)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    async def wait_snapshot(self, version: int) -> dict[str, Any] | None:
        """The capture at ``version``, waiting for it; None once stopped without reaching it."""
        cond = self._cond()
        async with cond:
            await cond.wait_for(
                lambda: (
                    version in self.core.snapshots
                    or self.core.stopped
                    or self.core.version > version
                )
            )
        return self.core.take_snapshot(version)

    async def stop(self) -> None:
        self.core.stop()
        await self._notify()

    def final(self) -> dict[str, Any]:
        return self.core.final()

    def stats(self) -> dict[str, Any]:
        return self.core.stats()

    def worker_clock(self, worker: int) -> int:
        return self.core.worker_clock(worker)

    def ping(self) -> int:
        return self.core.index

    def pid(self) -> int:
        return os.getpid()
