"""A worker's link to one shard, chosen once per shard (see :mod:`workers.transport`): a
persistent socket to the shard's channel server (shared-memory doorbells, or the slices inline),
or Ray actor calls as the fallback."""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import ray

from ps.protocol import wire
from ps.protocol.messages import STATUSES, PullReply, PullRequest, Push, RowsPush, Status

CONNECT_TIMEOUT_S = 30.0


class Link:
    """How one shard is reached (see the module docstring). A send carries a push (with its
    embedding-row gradients) and/or a pull (with the rows to read)."""

    kind = "ray"

    def send(
        self,
        push: Push | None,
        payload: Any,
        buffers: np.ndarray,
        rows: list[RowsPush],
        pull: PullRequest | None,
    ) -> None:
        raise NotImplementedError

    def ack(self) -> Status | None:
        """The shard's answer to the push sent (None: none was sent)."""
        raise NotImplementedError

    def state(self, state: np.ndarray, buffers: np.ndarray) -> PullReply | None:
        """The shard's answer to the pull sent, its slice read into ``state`` and ``buffers``."""
        raise NotImplementedError

    def fetch(self, clock: int, table: int, keys: np.ndarray) -> np.ndarray:
        """Rows of ``table`` for ``keys`` now (a read outside the pull)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class RayLink(Link):
    """Actor calls through the object store (the fallback)."""

    def __init__(self, shard: Any, shm_state: str | None, shm_grads: str | None):
        self.shard = shard
        self.shm_state, self.shm_grads = shm_state, shm_grads
        self.kind = "ray-shm" if shm_state else "ray"
        self._push = None
        self._pull: PullRequest | None = None

    def send(self, push, payload, buffers, rows, pull):
        self._push = None
        if push is not None:
            if self.shm_grads:
                self._push = self.shard.push.remote(push, shm_grads=self.shm_grads, rows=rows)
            else:
                self._push = self.shard.push.remote(push, payload, buffers=buffers, rows=rows)
        self._pull = pull

    def ack(self):
        return ray.get(self._push) if self._push is not None else None

    def state(self, state, buffers):
        if self._pull is None:
            return None
        # Sent only now, after the push was answered: an async actor may reorder calls.
        reply = ray.get(self.shard.pull.remote(self._pull, self.shm_state))
        if reply.params is not None:
            np.copyto(state, reply.params)
            if buffers.size:
                np.copyto(buffers, reply.buffers)
        return reply

    def fetch(self, clock, table, keys):
        return ray.get(self.shard.lookup_rows.remote(clock, table, keys))


class SocketLink(Link):
    """A persistent connection to the shard's channel server."""

    def __init__(self, sock: socket.socket, shm_mode: bool, size: int, widths: list[int]) -> None:
        self.sock, self.shm_mode = sock, shm_mode
        self.kind = "shm" if shm_mode else ("tcp" if sock.family == socket.AF_INET else "unix")
        self.size, self.widths = size, widths
        self._pushed = False
        self._pull: PullRequest | None = None

    def send(self, push, payload, buffers, rows, pull):
        self._pushed, self._pull = push is not None, pull
        if push is not None:
            for table, keys, grads in rows:
                head = wire.TYPE.pack(wire.ROWS_PUSH) + wire.ROWS_BODY.pack(
                    push.seq, table, len(keys)
                )
                wire.send_arrays(self.sock, head, [keys, grads])
            self._send_push(push, payload, buffers)
        if pull is not None:
            wire.send_arrays(self.sock, *wire.pull_message(pull.clock, list(pull.rows)))

    def _send_push(self, push: Push, payload: Any, buffers: np.ndarray) -> None:
        kind, arrays = (0, []) if self.shm_mode else wire.encode_gradient(payload)
        k = arrays[0].size if kind == wire.PAYLOAD_KINDS["topk"] else 0
        norm = push.grad_norm
        body = wire.PUSH_BODY.pack(
            push.seq,
            push.base_version,
            push.base_min_clock,
            0.0 if norm is None else norm,
            int(norm is not None),
            kind,
            self.size,
            k,
        )
        head = wire.TYPE.pack(wire.PUSH) + body
        wire.send_arrays(self.sock, head, [] if self.shm_mode else [*arrays, buffers])

    def ack(self):
        if not self._pushed:
            return None
        _, code = wire.recv_struct(self.sock, wire.ACK_HEAD)
        return STATUSES[code]

    def state(self, state, buffers):
        if self._pull is None:
            return None
        _, stop, version, min_clock = wire.recv_struct(self.sock, wire.STATE_HEAD)
        reply = PullReply(bool(stop), version, min_clock)
        if not stop and not self.shm_mode:
            wire.recv_arrays(self.sock, [state, buffers])
        if not stop and self._pull.rows:
            reply.rows = [
                np.empty((len(k), self.widths[t]), np.float32) for t, k in self._pull.rows
            ]
            wire.recv_arrays(self.sock, reply.rows)
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


def connect(address, local: bool) -> socket.socket:
    if local:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(address.unix_name)
    else:
        sock = socket.create_connection((address.host, address.port), CONNECT_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock
