"""A worker's side of the parameter transport: pull every shard's slice, push gradient slices.

One place for the data path between a worker and the shards, used by the worker actor and by
``benchmarks/transport.py``. Two paths behind the same calls:

- **same node** (``training.transport: auto``, the default): the worker's flat parameter and
  gradient buffers live in /dev/shm; a shard on the same node copies its slice of the parameters
  straight into the worker's parameter memory inside its pull handler, and reads its slice of the
  gradient straight from the worker's gradient memory inside its push handler. The Ray calls carry
  only small control messages: one memcpy each way, no object-store allocation.
- **object store** (shards on other nodes, ``transport: object_store``, or compression): pulls
  return the slice through Ray's object store, pushes send the (compressed) slice.

Both are safe without locks: a worker writes its gradient only before a push and reads its
parameters only after a pull returns, and a shard touches them only inside those calls.
"""

from __future__ import annotations

import os

import numpy as np
import ray
import torch

from ps.server.shard import Push
from workers import shm
from workers.compression import Compressor


class ShardClient:
    """Pull/push for worker ``worker`` against ``shards`` split by ``plan``.

    Args:
        worker: the worker's index (the shards gate and dedupe by it).
        shards: shard actor handles, in plan order.
        param_slices: each shard's [lo, hi) slice of the flat parameters.
        n_params / n_buffers: the flat state vector is the parameters, then the model's float
            buffers (kept by shard 0).
        job_id: names the shared-memory files (``ps-<job_id>-...``) for cleanup by prefix.
        transport: ``auto`` (shared memory with shards on this node) or ``object_store``.
        compression / topk_ratio: the spec's gradient compression (object-store path only).

    Attributes:
        state / grads: the worker's flat buffers (parameters then buffers; gradient then the
            buffers' values to push); build the model's views on them.
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
    ) -> None:
        self.worker = worker
        self.shards = shards
        self.n_params = n_params
        self.param_slices = tuple(param_slices)
        self.compressors = [
            Compressor(compression, hi - lo, topk_ratio) for lo, hi in self.param_slices
        ]
        self._names: list[str] = []
        local = [False] * len(shards)
        if transport == "auto" and compression == "none" and shm.available():
            here = ray.get_runtime_context().get_node_id()
            local = [node == here for node in ray.get([s.node.remote() for s in shards])]
        self.local = local
        if any(local):
            base = f"{shm.prefix(job_id)}w{worker}-{os.getpid()}-{id(self):x}"
            self._names = [f"{base}-params", f"{base}-grads"]
            try:
                self.state = torch.from_numpy(shm.create(self._names[0], n_params + n_buffers))
                self.grads = torch.from_numpy(shm.create(self._names[1], n_params + n_buffers))
            except OSError:
                self.close()
                raise
        else:
            self.state = torch.zeros(n_params + n_buffers)
            self.grads = torch.zeros(n_params + n_buffers)
        self._state_np = self.state.numpy()

    def close(self) -> None:
        """Remove this client's shared-memory files (the shards' mappings stay valid)."""
        for name in self._names:
            shm.unlink(name)

    def pull(self, clock: int) -> tuple[int, int] | None:
        """Wait for the gate, bring the parameters in; (oldest version, slowest clock), or None
        when a shard says stop."""
        params_name = self._names[0] if self._names else None
        replies = ray.get(
            [
                s.pull.remote(self.worker, clock, params_name if local else None)
                for s, local in zip(self.shards, self.local, strict=True)
            ]
        )
        if any(r["stop"] for r in replies):
            return None
        for (lo, hi), r, local in zip(self.param_slices, replies, self.local, strict=True):
            if not local:
                np.copyto(self._state_np[lo:hi], r["params"])
        if not self.local[0] and replies[0]["buffers"].size:  # shard 0 keeps the buffers
            np.copyto(self._state_np[self.n_params :], replies[0]["buffers"])
        # Versions of different shards are equal in sync mode; report the oldest read.
        return min(r["version"] for r in replies), min(r["min_clock"] for r in replies)

    def push(
        self, seq: int, version: int, min_clock: int, grad: torch.Tensor, norm: float | None
    ) -> list[str]:
        """Send gradient number ``seq`` (in ``self.grads`` on the shared-memory path) to every
        shard; returns their acknowledgements."""
        record = Push(self.worker, seq, version, min_clock, norm)
        if grad.data_ptr() != self.grads.data_ptr():
            self.grads.copy_(grad)
        buffers = self.grads[self.n_params :].numpy()
        calls = []
        for i, (s, c, (lo, hi), local) in enumerate(
            zip(self.shards, self.compressors, self.param_slices, self.local, strict=True)
        ):
            if local:
                calls.append(s.push.remote(record, shm_grads=self._names[1]))
            else:
                tail = buffers if i == 0 and buffers.size else None
                calls.append(s.push.remote(record, c.compress(self.grads[lo:hi]), buffers=tail))
        return ray.get(calls)
