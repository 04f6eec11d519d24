"""The parameter-server shard as a Ray actor: its data-plane channels, and Ray methods for the
control plane (snapshots, stats, stop) and as the fallback transport."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import numpy as np
import ray
import torch

from ps.protocol.messages import PullReply, PullRequest, Push, RowsPush, Status
from ps.server.channels import ChannelAddress, ChannelServer
from ps.server.config import ShardConfig, ShardStats
from ps.server.shard import ShardCore
from ps.server.shared import SharedBuffers


class ParameterShard:
    """Ray actor around :class:`ShardCore` (an asyncio actor: waiting calls cost nothing).

    With ``config.token`` it serves the workers' channels from a dedicated thread
    (:class:`ChannelServer`); ``pull`` / ``push`` remain as the Ray-call transport (the
    ``object_store`` setting, and the fallback where a channel cannot be built). Both paths and
    the control methods share the core under one lock.

    Args:
        config: the shard's :class:`ShardConfig`.
        params: its initial slice; ``buffers``: the model's initial buffers (shard 0).
        restore: a checkpointed :meth:`ShardCore.state_dict` to continue from.
        num_threads: torch threads for the update.
        eval_keys: per table, this shard's keys that evaluations read.
    """

    def __init__(
        self,
        config: ShardConfig,
        params: np.ndarray,
        buffers: np.ndarray | None = None,
        restore: dict[str, Any] | None = None,
        num_threads: int = 1,
        eval_keys: dict[int, np.ndarray] | None = None,
    ) -> None:
        torch.set_num_threads(max(1, num_threads))
        self.core = ShardCore(config, params, buffers, eval_keys)
        if restore is not None:
            self.core.load_state_dict(restore)
        self.lock = threading.Lock()
        self.shared = SharedBuffers(config)
        self._changed: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.server = None
        if config.token:
            context = ray.get_runtime_context()
            self.server = ChannelServer(
                self.core,
                self.lock,
                self.shared,
                config.token,
                context.get_node_id(),
                ray.util.get_node_ip_address(),
                self._poke,
            )

    # -- waking waiters ---------------------------------------------------------------------
    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
            self._loop = asyncio.get_running_loop()
        return self._changed

    async def _notify(self) -> None:
        cond = self._cond()
        async with cond:
            cond.notify_all()

    def _poke(self) -> None:
        """From the channel thread: the core changed (wake snapshot and Ray-path waiters)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._notify()))

    def _changed_here(self) -> None:
        """The core changed in a Ray method: wake the channels' parked pulls too."""
        if self.server is not None:
            self.server.wake()

    def _locked(self, predicate) -> bool:
        with self.lock:
            return predicate()

    # -- the data plane's address -----------------------------------------------------------
    def channel(self) -> ChannelAddress | None:
        return self.server.address if self.server else None

    # -- the Ray-call transport -------------------------------------------------------------
    async def pull(self, request: PullRequest, shm_state: str | None = None) -> PullReply:
        """The parameters (and rows) for ``request.clock`` once the gate allows; with
        ``shm_state`` they are written into that worker buffer instead of the reply."""
        cond = self._cond()
        async with cond:
            await cond.wait_for(lambda: self._locked(lambda: self.core.may_pull(request.clock)))
        with self.lock:
            return self.shared.deliver(self.core.read(request.clock, request.rows), shm_state)

    async def push(
        self,
        push: Push,
        grad: Any = None,
        shm_grads: str | None = None,
        buffers: np.ndarray | None = None,
        rows: list[RowsPush] | tuple = (),
    ) -> Status:
        """Offer a gradient (``grad``, or read from worker buffer ``shm_grads``)."""
        with self.lock:
            if shm_grads is not None:
                grad, buffers = self.shared.slices(shm_grads)
            status = self.core.push(push, grad, buffers, rows)
        await self._notify()
        self._changed_here()
        return status

    # -- control ----------------------------------------------------------------------------
    def node(self) -> str:
        """The Ray node this shard runs on."""
        return ray.get_runtime_context().get_node_id()

    async def wait_snapshot(self, version: int) -> dict[str, Any] | None:
        """The capture at ``version``, waiting for it; None once stopped without reaching it."""
        core = self.core
        cond = self._cond()
        async with cond:
            await cond.wait_for(
                lambda: self._locked(
                    lambda: version in core.snapshots or core.stopped or core.version > version
                )
            )
        with self.lock:
            return core.take_snapshot(version)

    async def stop(self) -> None:
        with self.lock:
            self.core.stop()
        await self._notify()
        self._changed_here()

    async def close(self) -> None:
        """Stop and close the data-plane channels: once this returns no socket of this shard
        listens, even before Ray has reaped the process."""
        await self.stop()
        if self.server is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.server.close)

    def final(self) -> dict[str, Any]:
        with self.lock:
            return self.core.final()

    async def hold(self) -> int | None:
        """Begin stopping to hand the job back (see :meth:`ShardCore.hold`)."""
        with self.lock:
            step = self.core.hold()
        await self._notify()
        self._changed_here()
        return step

    async def stop_after(self, step: int) -> None:
        """Stop once every worker pushed ``step`` (see :meth:`ShardCore.stop_after`)."""
        with self.lock:
            self.core.stop_after(step)
        await self._notify()
        self._changed_here()

    def checkpoint(self) -> dict[str, Any]:
        """Its version and checkpoint state where a hand-back stopped it."""
        with self.lock:
            return self.core.checkpoint()

    def lookup_rows(self, clock: int, table: int, keys: np.ndarray) -> np.ndarray:
        """Embedding rows for a worker at ``clock`` (a read outside the pull)."""
        with self.lock:
            return self.core.lookup_rows(clock, table, keys)

    def stats(self) -> ShardStats:
        with self.lock:
            stats = self.core.stats()
        if self.server is not None:
            stats.channels = dict(self.server.connections)
        stats.pid = os.getpid()
        return stats

    def worker_clock(self, worker: int) -> int:
        with self.lock:
            return self.core.worker_clock(worker)

    def ping(self) -> int:
        return self.core.index
