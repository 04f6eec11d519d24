"""A shard's end of the data plane: persistent connections served from a dedicated thread.

Each worker connects once per job (a Unix-domain socket in the abstract namespace on its node —
no file to leave behind —, TCP across nodes) and proves it belongs to the job with the job's
secret. The thread then serves pushes and pulls in order per connection: a push is offered to
the shard core and acknowledged; a pull is answered as soon as the consistency gate allows, else
parked until a push (or a stop) opens it. Ray is not on this path; the shard's Ray methods
(stats, snapshots, stop) share the core with this thread under one lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ps.protocol import wire
from ps.protocol.messages import STATUSES, Push, RowsPush
from ps.server.shard import ShardCore
from ps.server.shared import SharedBuffers

log = logging.getLogger(__name__)
ACCEPT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ChannelAddress:
    """Where a shard's channels listen."""

    node_id: str
    unix_name: str  # an abstract-namespace Unix socket name (leading NUL)
    host: str
    port: int


@dataclass
class _Connection:
    sock: socket.socket
    worker: int
    shm_state: str | None
    shm_grads: str | None
    rows: list = field(default_factory=list)  # ROWS_PUSH messages for the next PUSH


class ChannelServer:
    """Serves the workers' connections of one shard.

    Args:
        core: the shard's logic.
        lock: held around every use of ``core`` (the shard's Ray methods hold it too).
        shared: the workers' shared buffers on this node, mapped.
        token: the job's secret a worker must present.
        node_id / host: this node's Ray id and address (TCP binds ``host``, port 0).
        changed: called (from this thread) after every push, for snapshot waiters.
    """

    def __init__(
        self,
        core: ShardCore,
        lock: threading.Lock,
        shared: SharedBuffers,
        token: bytes,
        node_id: str,
        host: str,
        changed: Callable[[], None],
    ) -> None:
        self.core, self.lock, self.shared = core, lock, shared
        self.token, self.changed = token, changed
        self.selector = selectors.DefaultSelector()
        name = f"\0ps-channel-{os.getpid()}-{secrets.token_hex(8)}"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(name)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind((host, 0))
        self.address = ChannelAddress(node_id, name, host, self.tcp.getsockname()[1])
        for listener in (self.unix, self.tcp):
            listener.listen(64)
            self.selector.register(listener, selectors.EVENT_READ, "listen")
        self._wake_r, self._wake_w = socket.socketpair()
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.parked: list[tuple[_Connection, int, list]] = []  # (conn, clock, row requests)
        # connections by link kind, named as the workers name theirs (ps.metrics.LINK_KINDS)
        self.connections: dict[str, int] = {"shm": 0, "unix": 0, "tcp": 0}
        self._closing = False
        self._push_scratch: dict[tuple, tuple] = {}
        self._buffers = np.empty(core.config.buffers, np.float32)
        self.thread = threading.Thread(target=self._serve, name="ps-channels", daemon=True)
        self.thread.start()

    # -- control (from other threads) -------------------------------------------------------
    def wake(self) -> None:
        """Re-check parked pulls (the shard stopped, or its state changed outside a push)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"w")

    def close(self) -> None:
        self._closing = True
        self.wake()
        self.thread.join(timeout=5)
        for key in list(self.selector.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()
        self._wake_w.close()

    # -- the loop ---------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._closing:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "listen":
                    self._accept(key.fileobj)
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        key.fileobj.recv(4096)
                else:
                    self._receive(key.data)
            self._serve_parked()

    def _accept(self, listener: socket.socket) -> None:
        sock, _ = listener.accept()
        try:
            sock.settimeout(ACCEPT_TIMEOUT_S)
            if sock.family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hello = wire.recv_hello(sock, self.token, self.core.config.workers)
            sock.settimeout(None)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("refused a data-plane connection: %s", exc)
            sock.close()
            return
        conn = _Connection(sock, hello.worker, hello.shm_state, hello.shm_grads)
        tcp = sock.family == socket.AF_INET
        self.connections["shm" if hello.shm_state else ("tcp" if tcp else "unix")] += 1
        self.selector.register(sock, selectors.EVENT_READ, conn)

    def _drop(self, conn: _Connection) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.sock)
        conn.sock.close()
        self.parked = [p for p in self.parked if p[0] is not conn]

    def _receive(self, conn: _Connection) -> None:
        try:
            (kind,) = wire.recv_struct(conn.sock, wire.TYPE)
            if kind == wire.PUSH:
                self._push(conn)
            elif kind == wire.PULL:
                clock, count = wire.recv_struct(conn.sock, wire.PULL_BODY)
                self.parked.append((conn, clock, wire.recv_requests(conn.sock, count)))
            elif kind == wire.ROWS_PUSH:
                seq, table, n = wire.recv_struct(conn.sock, wire.ROWS_BODY)
                keys = wire.recv_keys(conn.sock, n)
                grads = np.empty((n, self._width(table)), np.float32)
                wire.recv_arrays(conn.sock, [grads])
                conn.rows.append(RowsPush(table, keys, grads))
            elif kind == wire.ROWS_PULL:
                self._rows_pull(conn)
            else:
                raise wire.ChannelClosed(f"unknown message type {kind}")
        except (OSError, wire.ChannelClosed, ValueError, RuntimeError):
            self._drop(conn)  # the worker died or broke the protocol; its replacement reconnects
        except Exception:  # noqa: BLE001 - a bug must not stop the thread serving every worker
            log.exception("shard %d: dropped worker %d's channel", self.core.index, conn.worker)
            self._drop(conn)

    def _width(self, table: int) -> int:
        tables = self.core.config.tables.tables
        if not 0 <= table < len(tables):
            raise wire.ChannelClosed(f"rows of table {table} (the model has {len(tables)})")
        return tables[table].width

    def _rows_pull(self, conn: _Connection) -> None:
        if any(p[0] is conn for p in self.parked):
            raise wire.ChannelClosed("a ROWS_PULL while a PULL waits")
        clock, table, n = wire.recv_struct(conn.sock, wire.ROWS_BODY)
        keys = wire.recv_keys(conn.sock, n)
        with self.lock:
            values = self.core.lookup_rows(clock, table, keys)
        wire.send_arrays(conn.sock, wire.TYPE.pack(wire.ROWS), [values])

    def _push(self, conn: _Connection) -> None:
        body = wire.recv_struct(conn.sock, wire.PUSH_BODY)
        seq, version, min_clock, norm, has_norm, kind, n, k = body
        record = Push(conn.worker, seq, version, min_clock, norm if has_norm else None)
        rows, conn.rows = conn.rows, []
        if conn.shm_grads:
            with self.lock:
                grad, buffers = self.shared.slices(conn.shm_grads)
                status = self.core.push(record, grad, buffers, rows)
        else:
            payload, arrays = self._scratch(kind, n, k)
            wire.recv_arrays(conn.sock, arrays)
            wire.recv_arrays(conn.sock, [self._buffers])
            grad = arrays[0] if payload is None else payload
            with self.lock:
                status = self.core.push(record, grad, self._buffers, rows)
        conn.sock.sendall(wire.ACK_HEAD.pack(wire.ACK, STATUSES.index(status)))
        self.changed()

    def _scratch(self, kind: int, n: int, k: int) -> tuple:
        """Receive buffers for a payload shape (kept: the next push has the same one)."""
        size = self.core.config.size
        if n != size:
            raise wire.ChannelClosed(f"a gradient of {n} values for a slice of {size}")
        key = (kind, k)
        if key not in self._push_scratch:
            self._push_scratch[key] = wire.gradient_buffers(kind, size, k)
        return self._push_scratch[key]

    def _serve_parked(self) -> None:
        waiting, self.parked = self.parked, []
        for conn, clock, requests in waiting:
            try:
                with self.lock:
                    if not self.core.may_pull(clock):
                        self.parked.append((conn, clock, requests))
                        continue
                    reply = self.shared.deliver(self.core.read(clock, requests), conn.shm_state)
                head = wire.STATE_HEAD.pack(
                    wire.STATE, int(reply.stop), reply.version, reply.min_clock
                )
                inline = [reply.params, reply.buffers] if reply.params is not None else []
                wire.send_arrays(conn.sock, head, inline + reply.rows)
            except (OSError, ValueError, RuntimeError):
                self._drop(conn)  # gone, or a broken request: its worker fails and is replaced
