"""A model's parameters and gradients as views into one flat float32 buffer each.

A pull is one copy into ``params``; a push sends ``grads`` (sliced per shard). No per-tensor
lists cross the process boundary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FlatModel:
    """Re-points every parameter of ``module`` (and its ``.grad``) into two flat buffers.

    Attributes:
        params: the flat parameters, in ``module.parameters()`` order.
        grads: the flat gradient; ``zero_grad()`` then ``backward()`` fills it in place.
        layers: ``(name, lo, hi)`` of every parameter tensor in the flat order.
    """

    def __init__(
        self,
        module: nn.Module,
        params: torch.Tensor | None = None,
        grads: torch.Tensor | None = None,
    ) -> None:
        """``params`` / ``grads``: preallocated flat buffers to use (e.g. in shared memory)."""
        self.module = module
        tensors = list(module.parameters())
        n = sum(p.numel() for p in tensors)
        self.params = params if params is not None else torch.empty(n, dtype=torch.float32)
        self.grads = grads if grads is not None else torch.zeros(n, dtype=torch.float32)
        if self.params.shape != (n,) or self.grads.shape != (n,):
            raise ValueError(f"flat buffers must hold {n} floats")
        self.layers: list[tuple[str, int, int]] = []
        offset = 0
        for name, p in module.named_parameters():
            k = p.numel()
            self.params[offset : offset + k].copy_(p.detach().reshape(-1))
            p.data = self.params[offset : offset + k].view_as(p)
            p.grad = self.grads[offset : offset + k].view_as(p)
            self.layers.append((name, offset, offset + k))
            offset += k

    def zero_grad(self) -> None:
        self.grads.zero_()

    def gradient(self) -> Tensor:
        """The flat gradient after ``backward()``.

        Autograd accumulates into an existing ``.grad`` in place, so this is normally
        ``self.grads`` as is; if any ``.grad`` was replaced it is copied back and re-pointed.
        """
        for (_, lo, hi), p in zip(self.layers, self.module.parameters(), strict=True):
            view = self.grads[lo:hi]
            if p.grad is None:
                view.zero_()
                p.grad = view.view_as(p)
            elif p.grad.data_ptr() != view.data_ptr():
                view.copy_(p.grad.reshape(-1))
                p.grad = view.view_as(p)
        return self.grads

    def layer_norms(self) -> dict[str, float]:
        """L2 norm of each parameter tensor's gradient (vanishing gradients show here)."""
        return {name: float(self.grads[lo:hi].norm()) for name, lo, hi in self.layers}
