"""A shard's view of its workers' shared memory (same node): where a pull's reply and a push's
gradient are, for the channel server and the Ray-call path alike.

The shard core sees arrays only; this layer maps a worker's buffers (:mod:`ps.protocol.shm`)
once and hands the core this shard's slice of them, and copies a reply either into the
worker's buffer or into arrays of its own that the shard may release the lock on.
"""

from __future__ import annotations

import numpy as np

from ps.protocol import shm
from ps.protocol.messages import PullReply
from ps.server.config import ShardConfig


class SharedBuffers:
    """The mapped shared buffers of one shard's workers.

    Args:
        config: the shard's slice (``offset``, ``size``) and buffers (``buffer_offset``,
            ``buffers``) in a worker's flat state vector.
    """

    def __init__(self, config: ShardConfig) -> None:
        self.config = config
        self._maps: dict[str, np.ndarray] = {}  # a worker's buffer name -> the whole mapping

    def _mapped(self, name: str) -> np.ndarray:
        whole = self._maps.get(name)
        if whole is None:
            if len(self._maps) > 4 * self.config.workers:  # replaced workers' buffers: drop maps
                self._maps.clear()
            whole = self._maps[name] = shm.attach(name)
        return whole

    def slices(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(this shard's parameter slice, its buffers) in worker buffer ``name``."""
        whole, c = self._mapped(name), self.config
        return (
            whole[c.offset : c.offset + c.size],
            whole[c.buffer_offset : c.buffer_offset + c.buffers],
        )

    def deliver(self, reply: PullReply, name: str | None) -> PullReply:
        """Make ``reply`` safe to hold without the shard's lock: its state copied into worker
        buffer ``name`` (the reply then carries none), or into arrays of its own."""
        if reply.stop:
            return reply
        if name is None:
            reply.params, reply.buffers = reply.params.copy(), reply.buffers.copy()
            return reply
        params, buffers = self.slices(name)
        np.copyto(params, reply.params)
        np.copyto(buffers, reply.buffers)
        reply.params = reply.buffers = None
        return reply
