"""The data plane's wire format: small fixed headers on a stream socket, payloads read straight
into preallocated buffers.

A worker keeps one connection per shard (a Unix-domain socket on the same node, TCP across
nodes), opened once per job with :data:`HELLO` (its index, the job's secret, and — on the same
node — the names of its shared-memory buffers). Then, per step::

    worker → shard   ROWS_PUSH  seq, table, n, keys, gradient rows    (one per table, if any)
    worker → shard   PUSH  seq, base version, base min clock, global norm [, payload]
    worker → shard   PULL  clock, r, then r × (table, n, keys)            (rows to read)
    shard  → worker  ACK   status
    shard  → worker  STATE stop, version, min clock [, payload] [, r × rows]

With shared memory the payloads are empty: the shard reads the gradient from the worker's
gradient buffer and writes the parameters into its parameter buffer, and the messages are only
doorbells. Otherwise a payload is the shard's slice as float32 (or a compressed gradient), then
the buffers as float32. Embedding rows always travel inline, by key: keys are int64, rows
float32 of the table's width; a ROWS_PUSH belongs to the PUSH that follows it. A module that
reads rows outside the pull (a user module) sends ``ROWS_PULL clock, table, n, keys`` and gets
``ROWS`` with the rows at once.
"""

from __future__ import annotations

import hmac
import socket
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ps.protocol.messages import RowsRequest

MAGIC = b"PSC1"
TOKEN_BYTES = 32
PUSH, PULL, ACK, STATE, HELLO_OK, ROWS_PUSH, ROWS_PULL, ROWS = 1, 2, 3, 4, 5, 6, 7, 8

# kind: 0 dense float32, 1 fp16, 2 bf16, 3 top-k (int32 indices, float32 values)
PAYLOAD_KINDS = {"dense": 0, "fp16": 1, "bf16": 2, "topk": 3}
KIND_NAMES = {v: k for k, v in PAYLOAD_KINDS.items()}

HELLO_HEAD = struct.Struct("<4si32sBHH")  # magic, worker, token, shared memory?, name lengths
TYPE = struct.Struct("<B")  # every message after HELLO starts with its type
PUSH_BODY = struct.Struct("<qqqdBBqq")  # seq, version, min clock, norm, has norm, kind, n, k
PULL_BODY = struct.Struct("<qH")  # clock, row requests that follow
ROWS_BODY = struct.Struct("<qHq")  # seq (push) or clock (pull), table, keys
ROWS_REQUEST = struct.Struct("<Hq")  # table, keys
MAX_ROWS = 1 << 24  # keys in one message (bounds what a peer can make a shard allocate)
ACK_HEAD = struct.Struct("<BB")  # type, status
STATE_HEAD = struct.Struct("<BBqq")  # type, stop, version, min clock


class ChannelClosed(ConnectionError):
    """The other end went away (a dead worker or shard)."""


@dataclass(frozen=True)
class Hello:
    worker: int
    token: bytes
    shm_state: str | None
    shm_grads: str | None


def recv_exactly(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock`` (``recv_into``: no intermediate copies)."""
    while view.nbytes:
        n = sock.recv_into(view)
        if n == 0:
            raise ChannelClosed("the connection was closed")
        view = view[n:]


def recv_struct(sock: socket.socket, fmt: struct.Struct) -> tuple:
    buf = bytearray(fmt.size)
    recv_exactly(sock, memoryview(buf))
    return fmt.unpack(buf)


def send_hello(sock: socket.socket, hello: Hello) -> None:
    state, grads = (hello.shm_state or "").encode(), (hello.shm_grads or "").encode()
    head = HELLO_HEAD.pack(
        MAGIC, hello.worker, hello.token, int(bool(hello.shm_state)), len(state), len(grads)
    )
    sock.sendall(head + state + grads)
    (kind,) = recv_struct(sock, struct.Struct("<B"))
    if kind != HELLO_OK:
        raise ChannelClosed("the shard refused the connection")


def recv_hello(sock: socket.socket, token: bytes, workers: int) -> Hello:
    """Read and check a HELLO; raises :class:`ChannelClosed` for anything else."""
    magic, worker, given, shared, n_state, n_grads = recv_struct(sock, HELLO_HEAD)
    if magic != MAGIC or not hmac.compare_digest(given, token) or not 0 <= worker < workers:
        raise ChannelClosed("a connection without the job's secret was refused")
    if n_state > 255 or n_grads > 255:
        raise ChannelClosed("buffer names too long")
    names = bytearray(n_state + n_grads)
    recv_exactly(sock, memoryview(names))
    state, grads = bytes(names[:n_state]).decode(), bytes(names[n_state:]).decode()
    sock.sendall(struct.pack("<B", HELLO_OK))
    return Hello(worker, given, state if shared else None, grads if shared else None)


def encode_gradient(payload: Any) -> tuple[int, list[np.ndarray]]:
    """(kind, arrays to send) of a gradient payload (a float32 array, or a compressed dict)."""
    if isinstance(payload, np.ndarray):
        return PAYLOAD_KINDS["dense"], [payload]
    kind = payload["kind"]
    if kind == "topk":
        return PAYLOAD_KINDS[kind], [payload["index"], payload["values"]]
    return PAYLOAD_KINDS[kind], [payload["data"]]


def gradient_buffers(kind: int, size: int, k: int) -> tuple[dict | None, list[np.ndarray]]:
    """Buffers to receive a gradient payload into, and the payload they make (None: dense)."""
    name = KIND_NAMES.get(kind)
    if name == "dense":
        array = np.empty(size, np.float32)
        return None, [array]
    if name in ("fp16", "bf16"):
        data = np.empty(size, np.float16 if name == "fp16" else np.int16)
        return {"kind": name, "data": data}, [data]
    if name == "topk" and 0 < k <= size:
        index, values = np.empty(k, np.int32), np.empty(k, np.float32)
        return {"kind": name, "size": size, "index": index, "values": values}, [index, values]
    raise ChannelClosed(f"a gradient payload of unknown kind {kind} or size {k}")


def send_arrays(sock: socket.socket, head: bytes, arrays: list[np.ndarray | bytes]) -> None:
    """A header and arrays (or more header bytes), in one gathering write where the socket
    takes it, without copying the arrays."""
    parts = [memoryview(head)]
    for a in arrays:
        view = memoryview(a) if isinstance(a, bytes) else memoryview(np.ascontiguousarray(a))
        if view.nbytes:
            parts.append(view.cast("B"))
    while parts:
        sent = sock.sendmsg(parts)
        while parts and sent >= parts[0].nbytes:
            sent -= parts[0].nbytes
            parts.pop(0)
        if parts and sent:
            parts[0] = parts[0][sent:]


def pull_message(clock: int, requests: list[RowsRequest]) -> tuple[bytes, list]:
    """A PULL of the parameters for ``clock`` and of the rows ``requests`` (table, keys)."""
    head = TYPE.pack(PULL) + PULL_BODY.pack(clock, len(requests))
    parts: list = []
    for table, keys in requests:
        parts += [ROWS_REQUEST.pack(table, len(keys)), keys]
    return head, parts


def recv_keys(sock: socket.socket, n: int) -> np.ndarray:
    if not 0 <= n <= MAX_ROWS:
        raise ChannelClosed(f"{n} row keys in one message (at most {MAX_ROWS})")
    keys = np.empty(n, np.int64)
    recv_arrays(sock, [keys])
    return keys


def recv_requests(sock: socket.socket, count: int) -> list[RowsRequest]:
    """The row requests that follow a PULL."""
    out = []
    for _ in range(count):
        table, n = recv_struct(sock, ROWS_REQUEST)
        out.append(RowsRequest(table, recv_keys(sock, n)))
    return out


def recv_arrays(sock: socket.socket, arrays: list[np.ndarray]) -> None:
    for a in arrays:
        recv_exactly(sock, memoryview(a).cast("B"))
