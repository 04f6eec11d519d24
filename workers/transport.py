"""A worker's end of the data plane: pull every shard's slice, push gradient slices.

One place for the path between a worker and the shards, used by the worker task and by the
benchmarks. Per shard, one of three links, chosen once:

- **shared memory** (same node, no compression): the worker's flat state and gradient live in
  /dev/shm; a persistent Unix-domain socket carries only doorbells (push seq, pull clock,
  acknowledgements). The shard reads its slice of the gradient from the worker's memory and
  writes the parameters into it.
- **stream** (across nodes, or with compression): the same messages over a persistent TCP
  connection (a Unix socket on the same node), with the slices inline, read with ``recv_into``
  straight into the flat buffers.
- **Ray calls** (``training.transport: object_store``, or where a channel cannot be built): each
  pull and push is an actor call through Ray's object store.

A step sends its push and the next pull together (:meth:`ShardClient.send` with a
:class:`StepPush` and a :class:`StepPull`) and then reads both answers: one round trip per step.
Embedding rows follow the step's row plan (:mod:`workers.rowplan`): routed once, sent to each
shard in plan order. No locks are needed: a worker writes its gradient only before a push and
reads its parameters only after a pull is answered, and a shard touches the buffers only in
between.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import ray
import torch

from ps.protocol import shm, wire
from ps.protocol.compression import Compressor
from ps.protocol.messages import (
    PullRequest,
    Push,
    Status,
    TableConfig,
)
from workers.links import Link, RayLink, SocketLink, connect
from workers.rowplan import RowGradients, RowPlan, route

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepPush:
    """A worker's push of its gradient number ``seq`` (the gradient is in
    :attr:`ShardClient.grads`), computed from the parameters read at ``base_version`` when the
    slowest clock was ``base_min_clock``; ``rows``: its embedding-row gradients."""

    seq: int
    base_version: int
    base_min_clock: int
    grad_norm: float | None
    rows: tuple[RowGradients, ...] = ()


@dataclass(frozen=True)
class StepPull:
    """The pull of the parameters for step ``clock`` and of the rows its plan reads."""

    clock: int
    plan: RowPlan = RowPlan()


class Pulled(NamedTuple):
    """What a pull read: the oldest version across shards and the slowest worker's clock."""

    version: int
    min_clock: int


class ShardClient:
    """Pull/push for worker ``worker`` against ``shards``.

    Args:
        worker: the worker's index (the shards gate and dedupe by it).
        shards: shard actor handles, in slice order.
        param_slices: each shard's [lo, hi) slice of the flat parameters.
        n_params / n_buffers: the flat state vector is the parameters, then the model's float
            buffers (kept by shard 0).
        job_id: names the shared-memory files (``ps-<job_id>+...``) for cleanup by prefix.
        transport: ``auto`` / ``stream`` (channels) or ``object_store`` (Ray calls).
        compression / topk_ratio: the spec's gradient compression (stream links and Ray calls).
        token: the job's data-plane secret.
        shared_memory: use shared memory with shards on this node (off: the slices travel
            inline even there; for measurements).
        tables: the model's embedding tables (their rows live on the shards, by a hash of
            (table, id)).

    Attributes:
        state / grads: the worker's flat buffers (parameters then buffers; gradient then the
            buffers' values to push); build the model's views on them.
        links: each shard's link kind (``shm``, ``unix``, ``tcp``, ``ray``, ``ray-shm``).
        rows: after :meth:`read`, the rows pulled: table -> (keys, rows).
    """

    def __init__(
        self,
        worker: int,
        shards: list,
        param_slices: tuple[tuple[int, int], ...] | list[tuple[int, int]],
        n_params: int,
        n_buffers: int = 0,
        job_id: str = "",
        transport: str = "auto",
        compression: str = "none",
        topk_ratio: float = 0.01,
        token: bytes | None = None,
        shared_memory: bool = True,
        tables: tuple[TableConfig, ...] = (),
    ) -> None:
        self.worker = worker
        self.widths = [t.width for t in tables]
        self.rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pull: StepPull | None = None
        self.n_params = n_params
        self.param_slices = tuple(param_slices)
        self.compressors = [
            Compressor(compression, hi - lo, topk_ratio) for lo, hi in self.param_slices
        ]
        here = ray.get_runtime_context().get_node_id()
        addresses = ray.get([s.channel.remote() for s in shards])
        nodes = ray.get([s.node.remote() for s in shards])
        local = [node == here for node in nodes]
        use_shm = shared_memory and compression == "none" and shm.available() and any(local)
        self._names: list[str] = []
        self._allocate(n_params + n_buffers, job_id if use_shm else None)
        self._no_buffers = np.empty(0, np.float32)
        self.links = [
            self._link(i, shard, address, is_local and use_shm, is_local, transport, token)
            for i, (shard, address, is_local) in enumerate(
                zip(shards, addresses, local, strict=True)
            )
        ]

    def _allocate(self, n: int, job_id: str | None) -> None:
        """The flat state and gradient: in /dev/shm for shards on this node, else private."""
        if job_id is None:
            self.state, self.grads = torch.zeros(n), torch.zeros(n)
        else:
            base = f"{shm.prefix(job_id)}w{self.worker}-{os.getpid()}-{id(self):x}"
            self._names = [f"{base}-state", f"{base}-grads"]
            try:
                self.state = torch.from_numpy(shm.create(self._names[0], n))
                self.grads = torch.from_numpy(shm.create(self._names[1], n))
            except OSError:
                self.close()
                raise
        self._state_np, self._grads_np = self.state.numpy(), self.grads.numpy()

    def _link(self, i, shard, address, shared, local, transport, token) -> Link:
        shm_state, shm_grads = self._names if shared else (None, None)
        if transport in ("auto", "stream") and address is not None and token:
            lo, hi = self.param_slices[i]
            try:
                sock = connect(address, local)
                wire.send_hello(sock, wire.Hello(self.worker, token, shm_state, shm_grads))
                return SocketLink(sock, shared, hi - lo, self.widths)
            except OSError as exc:
                log.warning(
                    "worker %d: no data-plane channel to shard %d (%s); using Ray calls",
                    self.worker,
                    i,
                    exc,
                )
        return RayLink(shard, shm_state, shm_grads)

    @property
    def kinds(self) -> list[str]:
        return [link.kind for link in self.links]

    def close(self) -> None:
        """Close the links and remove this client's shared-memory files (the shards' mappings
        stay valid)."""
        for link in getattr(self, "links", ()):
            link.close()
        for name in self._names:
            shm.unlink(name)

    def pull(self, pull: StepPull) -> Pulled | None:
        """Bring the parameters (and the planned rows) for ``pull.clock`` in, or None when a
        shard says stop."""
        self.send(None, pull)
        return self.read()

    def send(self, push: StepPush | None, pull: StepPull | None) -> None:
        """Send ``push`` and ``pull`` to every shard (either may be None), then take
        :meth:`acks` and :meth:`read`: one round trip per shard."""
        self._pull = pull
        meta = None
        if push is not None:
            meta = Push(
                self.worker, push.seq, push.base_version, push.base_min_clock, push.grad_norm
            )
        buffers = self._grads_np[self.n_params :]
        for i, (link, c, (lo, hi)) in enumerate(
            zip(self.links, self.compressors, self.param_slices, strict=True)
        ):
            payload = rows = None
            if push is not None:
                payload = c.compress(self.grads[lo:hi])
                rows = [r for r in (g.for_shard(i) for g in push.rows) if r is not None]
            request = None
            if pull is not None:
                request = PullRequest(pull.clock, tuple(pull.plan.requests(i)))
            link.send(meta, payload, buffers if i == 0 else self._no_buffers, rows, request)

    def acks(self) -> list[Status]:
        """The shards' answers to the push sent."""
        return [a for a in (link.ack() for link in self.links) if a is not None]

    def read(self) -> Pulled | None:
        """The pulled state is in ``self.state`` and the planned rows in ``self.rows``: (oldest
        version, slowest clock), or None when a shard says stop (or nothing was pulled)."""
        replies = [
            link.state(
                self._state_np[lo:hi],
                self._state_np[self.n_params :] if i == 0 else self._no_buffers,
            )
            for i, (link, (lo, hi)) in enumerate(zip(self.links, self.param_slices, strict=True))
        ]
        if self._pull is None or any(r.stop for r in replies):
            return None
        self.rows = self._pull.plan.assemble([r.rows for r in replies], self.widths)
        # Versions of different shards are equal in sync mode; report the oldest read.
        return Pulled(min(r.version for r in replies), min(r.min_clock for r in replies))

    def fetch_rows(self, clock: int, table: int, keys: np.ndarray) -> np.ndarray:
        """Rows of ``table`` for ``keys`` (sorted, distinct) for a worker at ``clock``, read
        now from the shards keeping them (a read outside the pull)."""
        owners = route(table, keys, len(self.links))
        if owners is None:
            return self.links[0].fetch(clock, table, keys)
        values = np.empty((len(keys), self.widths[table]), np.float32)
        for link, at in zip(self.links, owners, strict=True):
            if at.size:
                values[at] = link.fetch(clock, table, keys[at])
        return values
