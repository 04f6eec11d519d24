"""A shard's dense part: its slice of the flat parameters, the model's buffers it keeps, their
optimizer state, and (sync) the step's gradient sum."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ps.optim import Optimizer
from ps.protocol.buckets import LATENCY_BUCKETS, Buckets


class DenseSlice:
    """The parameters ``[offset, offset + size)`` and ``n_buffers`` buffers of one shard.

    Args:
        params: the slice's initial values (copied).
        buffers: the model's initial float buffers it keeps (None: zeros).
        optimizer: the update rule.
        sync: gradients are summed per step (:meth:`accumulate`) and applied once.
        keep_before: keep the state from before each sync step (replays, see
            :mod:`ps.server.sync`).
        shards: how many shards the job has (with several, the global norm of an averaged
            gradient is unknown here).
    """

    def __init__(
        self,
        params: np.ndarray | torch.Tensor,
        buffers: np.ndarray | None,
        n_buffers: int,
        optimizer: Optimizer,
        sync: bool,
        keep_before: bool,
        shards: int,
    ) -> None:
        self.params = torch.as_tensor(np.array(params, dtype=np.float32, copy=True))
        self.buffers = torch.zeros(n_buffers)
        if buffers is not None:
            self.buffers.copy_(torch.from_numpy(np.array(buffers, dtype=np.float32)))
        self.optimizer, self.sync, self.shards = optimizer, sync, shards
        self.state = optimizer.init(self.params)
        self.version = 0
        self.lr = optimizer.lr_at(0)
        self.grad_buf = torch.empty_like(self.params)
        self._acc = torch.zeros_like(self.params) if sync else None
        self._acc_empty, self._acc_norms = True, 0.0
        self._buffer_sum = torch.zeros(n_buffers)
        self._buffer_count = 0
        self._before = torch.empty_like(self.params) if keep_before else None
        self._buffers_before = self.buffers.clone()
        self._version_before = 0
        self.timing = {"update_seconds": 0.0, "updates": 0}
        self.update_hist = Buckets(LATENCY_BUCKETS)

    def view(self, before_step: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(parameters, buffers, version) now, or as they were before the latest sync step.
        Live tensors: copy them before the shard's lock is released."""
        if before_step:
            return self._before, self._buffers_before, self._version_before
        return self.params, self.buffers, self.version

    # -- writes ------------------------------------------------------------------------------
    def accumulate(self, grad: np.ndarray, norm: float) -> None:
        """Add one worker's gradient to the sync step's sum."""
        if self._acc_empty:  # the step's first gradient: no zeroing, no addition
            np.copyto(self._acc.numpy(), grad)
        else:
            np.add(self._acc.numpy(), grad, out=self._acc.numpy())
        self._acc_empty = False
        self._acc_norms += norm

    def take_buffers(self, values: np.ndarray | None) -> None:
        """A worker's buffers: summed for the sync step's average, or (async) the latest."""
        if not self.buffers.numel() or values is None or not all_finite(values):
            return
        if self.sync:
            np.add(self._buffer_sum.numpy(), values, out=self._buffer_sum.numpy())
            self._buffer_count += 1
        else:
            np.copyto(self.buffers.numpy(), values)

    def finish_step(self, count: int) -> bool:
        """End a sync step over ``count`` accepted gradients; False: none, no update."""
        if self._before is not None:
            self._before.copy_(self.params)
            self._buffers_before.copy_(self.buffers)
            self._version_before = self.version
        if self._buffer_count:
            torch.div(self._buffer_sum, self._buffer_count, out=self.buffers)
            self._buffer_sum.zero_()
            self._buffer_count = 0
        if count == 0:
            return False
        if count > 1:
            self._acc.div_(count)
        # With several shards the averaged gradient's global norm is unknown here; the mean of
        # the workers' norms bounds it from above (triangle inequality), so clipping is safe.
        norm = self._acc_norms / count if self.shards > 1 else None
        self._acc_norms, self._acc_empty = 0.0, True
        self.apply(self._acc, norm)
        return True

    def apply_now(self, grad: np.ndarray, norm: float | None) -> None:
        """Apply one worker's gradient on arrival (async / ssp)."""
        if grad is not self.grad_buf.numpy():
            np.copyto(self.grad_buf.numpy(), grad)
        self.apply(self.grad_buf, norm if self.shards > 1 else None)

    def apply(self, grad: torch.Tensor, norm: float | None) -> None:
        t0 = time.perf_counter()
        self.lr = self.optimizer.step(self.params, grad, self.state, grad_norm=norm)
        elapsed = time.perf_counter() - t0
        self.timing["update_seconds"] += elapsed
        self.timing["updates"] += 1
        self.update_hist.observe(elapsed)
        self.version += 1

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        opt = self.optimizer.state_dict(self.state)
        return {
            "version": self.version,
            "params": self.params.clone(),
            "optimizer": {**opt, "tensors": {k: t.clone() for k, t in opt["tensors"].items()}},
            "buffers": self.buffers.clone(),
        }

    def load_state_dict(self, saved: dict[str, Any], what: str) -> None:
        """Continue from :meth:`state_dict` output.

        Raises:
            ValueError: the saved slice has another size (``what`` names the shard).
        """
        params = torch.as_tensor(np.asarray(saved["params"], dtype=np.float32))
        if params.shape != self.params.shape:
            raise ValueError(
                f"{what}: checkpoint has {params.numel()} floats, not {self.params.numel()}"
            )
        self.params.copy_(params)
        self.state = self.optimizer.load_state_dict(saved["optimizer"])
        self.version = int(saved["version"])
        if "buffers" in saved:
            self.buffers.copy_(torch.as_tensor(saved["buffers"]))
        self.lr = self.optimizer.lr_at(self.state.step)


def all_finite(grad: np.ndarray) -> bool:
    """Whether every element is finite."""
    # One cheap float32 reduction first: a finite sum implies every element is finite (a NaN or
    # an infinity makes it non-finite); only an overflowing or non-finite sum needs the exact
    # per-element check.
    total = torch.from_numpy(grad).sum() if grad.flags.writeable else grad.sum()
    if np.isfinite(float(total)):
        return True
    return bool(np.isfinite(grad).all())
