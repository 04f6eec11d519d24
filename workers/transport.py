"""A worker's end of the data plane: pull every shard's slice, push gradient slices.

One place for the path between a worker and the shards, used by the worker actor and by the
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

A step sends its push and the next pull together and then reads both answers: one round trip per
step. No locks are needed: a worker writes its gradient only before a push and reads its
parameters only after a pull is answered, and a shard touches the buffers only in between.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import numpy as np
import ray
import torch

from ps.hashing import shard_of
from ps.server import wire
from ps.server.shard import Push
from ps.server.sparse import TableConfig
from ps.server.tables import RowsPush, RowsRequest
from workers import shm
from workers.compression import Compressor

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 30.0


class _Link:
    """How one shard is reached (see the module docstring).

    A send carries a push (with its embedding-row gradients ``rows``) and/or a pull (with the
    embedding rows to read, ``requests``).
    """

    kind = "ray"

    def send(
        self,
        push: Push | None,
        payload: Any,
        buffers: np.ndarray,
        clock: int | None,
        rows: list[RowsPush],
        requests: list[RowsRequest],
    ) -> None:
        raise NotImplementedError

    def ack(self) -> str | None:
        """The shard's answer to the push sent (None: none was sent)."""
        raise NotImplementedError

    def state(self, state: np.ndarray, buffers: np.ndarray) -> dict | None:
        """The shard's answer to the pull sent, its slice read into ``state`` and ``buffers``,
        the rows requested in ``reply["rows"]``."""
        raise NotImplementedError

    def fetch(self, clock: int, table: int, keys: np.ndarray) -> np.ndarray:
        """Rows of ``table`` for ``keys`` now (a read outside the pull)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class _RayLink(_Link):
    """Actor calls through the object store (the fallback)."""

    def __init__(self, shard: Any, worker: int, shm_state: str | None, shm_grads: str | None):
        self.shard, self.worker = shard, worker
        self.shm_state, self.shm_grads = shm_state, shm_grads
        self.kind = "ray-shm" if shm_state else "ray"
        self._push = self._pull = None
        self._clock: int | None = None
        self._requests: list[RowsRequest] = []

    def send(self, push, payload, buffers, clock, rows, requests):
        self._push = None
        if push is not None:
            rows = rows or None
            if self.shm_grads:
                self._push = self.shard.push.remote(push, shm_grads=self.shm_grads, rows=rows)
            else:
                self._push = self.shard.push.remote(push, payload, buffers=buffers, rows=rows)
        self._clock, self._requests = clock, requests

    def ack(self):
        return ray.get(self._push) if self._push is not None else None

    def state(self, state, buffers):
        if self._clock is None:
            return None
        # Sent only now, after the push was answered: an async actor may reorder calls.
        pull = self.shard.pull.remote(
            self.worker, self._clock, self.shm_state, self._requests or None
        )
        reply = ray.get(pull)
        if not reply["stop"] and not self.shm_state:
            np.copyto(state, reply["params"])
            if buffers.size:
                np.copyto(buffers, reply["buffers"])
        return reply

    def fetch(self, clock, table, keys):
        return ray.get(self.shard.lookup_rows.remote(clock, table, keys))


class _SocketLink(_Link):
    """A persistent connection to the shard's channel server."""

    def __init__(
        self, sock: socket.socket, shm_mode: bool, size: int, n_buffers: int, widths: list[int]
    ) -> None:
        self.sock, self.shm_mode = sock, shm_mode
        self.kind = "shm" if shm_mode else ("tcp" if sock.family == socket.AF_INET else "unix")
        self.size, self.n_buffers, self.widths = size, n_buffers, widths
        self._pushed = self._pulled = False
        self._requests: list[RowsRequest] = []

    def send(self, push, payload, buffers, clock, rows, requests):
        self._pushed, self._pulled = push is not None, clock is not None
        for table, keys, grads in rows if push is not None else ():
            head = wire.TYPE.pack(wire.ROWS_PUSH) + wire.ROWS_BODY.pack(push.seq, table, len(keys))
            wire.send_arrays(self.sock, head, [keys, grads])
        if push is not None:
            kind, arrays = (0, []) if self.shm_mode else wire.encode_gradient(payload)
            k = arrays[0].size if kind == wire.PAYLOAD_KINDS["topk"] else 0
            norm = push.grad_norm
            head = wire.TYPE.pack(wire.PUSH) + wire.PUSH_BODY.pack(
                push.seq,
                push.base_version,
                push.base_min_clock,
                0.0 if norm is None else norm,
                int(norm is not None),
                kind,
                self.size,
                k,
            )
            wire.send_arrays(self.sock, head, [] if self.shm_mode else [*arrays, buffers])
        if clock is not None:
            self._requests = requests
            wire.send_arrays(self.sock, *wire.pull_message(clock, requests))

    def ack(self):
        if not self._pushed:
            return None
        _, code = wire.recv_struct(self.sock, wire.ACK_HEAD)
        return wire.STATUSES[code]

    def state(self, state, buffers):
        if not self._pulled:
            return None
        _, stop, version, min_clock = wire.recv_struct(self.sock, wire.STATE_HEAD)
        reply = {"stop": bool(stop), "version": version, "min_clock": min_clock}
        if not stop and not self.shm_mode:
            wire.recv_arrays(self.sock, [state, buffers])
        if not stop and self._requests:
            rows = [np.empty((len(k), self.widths[t]), np.float32) for t, k in self._requests]
            wire.recv_arrays(self.sock, rows)
            reply["rows"] = rows
        return reply

    def fetch(self, clock, table, keys):
        head = wire.TYPE.pack(wire.ROWS_PULL) + wire.ROWS_BODY.pack(clock, table, len(keys))
        wire.send_arrays(self.sock, head, [keys])
        (kind,) = wire.recv_struct(self.sock, wire.TYPE)
        if kind != wire.ROWS:
            raise wire.ChannelClosed(f"expected rows, got message type {kind}")
        rows = np.empty((len(keys), self.widths[table]), np.float32)
        wire.recv_arrays(self.sock, [rows])
        return rows

    def close(self) -> None:
        self.sock.close()


def _connect(address, local: bool) -> socket.socket:
    if local:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(address.unix_name)
    else:
        sock = socket.create_connection((address.host, address.port), CONNECT_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock


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
        self._plan: list[tuple[int, np.ndarray, list[np.ndarray]]] = []
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
        n = n_params + n_buffers
        if use_shm:
            base = f"{shm.prefix(job_id)}w{worker}-{os.getpid()}-{id(self):x}"
            self._names = [f"{base}-state", f"{base}-grads"]
            try:
                self.state = torch.from_numpy(shm.create(self._names[0], n))
                self.grads = torch.from_numpy(shm.create(self._names[1], n))
            except OSError:
                self.close()
                raise
        else:
            self.state, self.grads = torch.zeros(n), torch.zeros(n)
        self._state_np, self._grads_np = self.state.numpy(), self.grads.numpy()
        self._no_buffers = np.empty(0, np.float32)
        self.links = [
            self._link(i, shard, address, is_local and use_shm, is_local, transport, token)
            for i, (shard, address, is_local) in enumerate(
                zip(shards, addresses, local, strict=True)
            )
        ]

    def _link(self, i, shard, address, shared, local, transport, token) -> _Link:
        shm_state, shm_grads = self._names if shared else (None, None)
        if transport in ("auto", "stream") and address is not None and token:
            lo, hi = self.param_slices[i]
            try:
                sock = _connect(address, local)
                wire.send_hello(sock, wire.Hello(self.worker, token, shm_state, shm_grads))
                return _SocketLink(sock, shared, hi - lo, self._buffer_count(i), self.widths)
            except OSError as exc:
                log.warning(
                    "worker %d: no data-plane channel to shard %d (%s); using Ray calls",
                    self.worker,
                    i,
                    exc,
                )
        return _RayLink(shard, self.worker, shm_state, shm_grads)

    def _buffer_count(self, i: int) -> int:
        return self.state.numel() - self.n_params if i == 0 else 0

    @property
    def kinds(self) -> list[str]:
        return [link.kind for link in self.links]

    def close(self) -> None:
        """Close the links and remove this client's shared-memory files (the shards' mappings
        stay valid)."""
        for link in self.links:
            link.close()
        for name in self._names:
            shm.unlink(name)

    def pull(self, clock: int, requests: list[RowsRequest] = ()) -> tuple[int, int] | None:
        """Bring the parameters (and the rows ``requests``) for step ``clock`` in: (oldest
        version, slowest clock), or None when a shard says stop."""
        self.send(None, None, None, None, clock, requests=requests)
        return self.read()

    def send(
        self,
        seq: int | None,
        version: int | None,
        min_clock: int | None,
        norm: float | None,
        clock: int | None,
        rows: list[RowsPush] = (),
        requests: list[RowsRequest] = (),
    ) -> None:
        """Send gradient number ``seq`` (from ``self.grads``, with the embedding-row gradients
        ``rows``) and the pull of the parameters for step ``clock`` (with the rows
        ``requests``) to every shard; either may be None. Then take :meth:`acks` and
        :meth:`read` (one round trip per shard). Keys are sorted and distinct."""
        push = None if seq is None else Push(self.worker, seq, version, min_clock, norm)
        self._pulling = clock is not None
        buffers = self._grads_np[self.n_params :]
        pushes = self._by_shard([(t, k, (g,)) for t, k, g in rows])
        self._plan = [(t, k, self._owners(t, k)) for t, k in requests]
        pulls = self._by_shard([(t, k, ()) for t, k in requests])
        for i, (link, c, (lo, hi)) in enumerate(
            zip(self.links, self.compressors, self.param_slices, strict=True)
        ):
            payload = None if push is None else c.compress(self.grads[lo:hi])
            own_rows = [(t, k, g) for t, k, (g,) in pushes[i]]
            own_requests = [(t, k) for t, k, _ in pulls[i]]
            link.send(
                push, payload, buffers if i == 0 else self._no_buffers, clock, own_rows,
                own_requests,
            )  # fmt: skip

    def _owners(self, table: int, keys: np.ndarray) -> list[np.ndarray]:
        """For each shard, the positions in ``keys`` of the rows it keeps."""
        owner = shard_of(table, keys, len(self.links))
        return [np.flatnonzero(owner == i) for i in range(len(self.links))]

    def _by_shard(self, items: list[tuple[int, np.ndarray, tuple]]) -> list[list[tuple]]:
        """Split (table, keys, arrays) by the shard keeping each row (order kept: sorted keys
        stay sorted)."""
        out: list[list[tuple]] = [[] for _ in self.links]
        for table, keys, arrays in items:
            if len(self.links) == 1:
                out[0].append((table, keys, arrays))
                continue
            for i, at in enumerate(self._owners(table, keys)):
                if at.size:
                    out[i].append((table, keys[at], tuple(a[at] for a in arrays)))
        return out

    def acks(self) -> list[str]:
        """The shards' answers to the push sent."""
        return [a for a in (link.ack() for link in self.links) if a is not None]

    def read(self) -> tuple[int, int] | None:
        """The pulled state is in ``self.state``: (oldest version, slowest clock), or None when a
        shard says stop (or nothing was pulled)."""
        replies = [
            link.state(
                self._state_np[lo:hi],
                self._state_np[self.n_params :] if i == 0 else self._no_buffers,
            )
            for i, (link, (lo, hi)) in enumerate(zip(self.links, self.param_slices, strict=True))
        ]
        if not self._pulling or any(r["stop"] for r in replies):
            return None
        self.rows = {}
        answered = [iter(r.get("rows", ())) for r in replies]
        for table, keys, owners in self._plan:
            values = np.empty((len(keys), self.widths[table]), np.float32)
            for i, at in enumerate(owners):
                if at.size:
                    values[at] = next(answered[i])
            self.rows[table] = (keys, values)
        # Versions of different shards are equal in sync mode; report the oldest read.
        return min(r["version"] for r in replies), min(r["min_clock"] for r in replies)

    def fetch_rows(self, clock: int, table: int, keys: np.ndarray) -> np.ndarray:
        """Rows of ``table`` for ``keys`` (sorted, distinct) for a worker at ``clock``, read
        now from the shards keeping them (a read outside the pull)."""
        values = np.empty((len(keys), self.widths[table]), np.float32)
        for link, at in zip(self.links, self._owners(table, keys), strict=True):
            if at.size:
                values[at] = link.fetch(clock, table, keys[at])
        return values
