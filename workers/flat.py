"""A model's parameters, float buffers and gradients as views into flat float32 buffers.

The flat *state* vector is the parameters (in ``module.parameters()`` order) followed by the
floating-point buffers (BatchNorm's running statistics, and any other the module registers). A
pull is one copy into ``state``; a push sends ``grads``, whose tail carries the worker's current
buffers (their "gradient" is their value: the shards average them). No per-tensor lists cross
the process boundary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def float_buffers(module: nn.Module) -> list[tuple[str, Tensor]]:
    """The module's floating-point buffers (integer ones, like BatchNorm's batch counter, stay
    local to each process; a sparse embedding's rows live in tables on the shards)."""
    from workers.sparse import SparseEmbedding

    tables = {
        id(b)
        for m in module.modules()
        if isinstance(m, SparseEmbedding)
        for b in m.buffers(recurse=False)
    }
    return [
        (n, b) for n, b in module.named_buffers() if b.is_floating_point() and id(b) not in tables
    ]


def state_sizes(module: nn.Module) -> tuple[int, int]:
    """(parameters, float buffer values) of ``module``."""
    n_params = sum(p.numel() for p in module.parameters())
    return n_params, sum(b.numel() for _, b in float_buffers(module))


class FlatModel:
    """Re-points every parameter (and its ``.grad``) and float buffer of ``module`` into two flat
    buffers.

    Args:
        module: the model (its current values are copied into the flat buffers).
        state / grads: preallocated flat buffers to use (e.g. in shared memory), each of
            ``n_params + n_buffers`` floats.

    Attributes:
        state: parameters, then buffers. ``params`` is its head, ``buffers`` its tail.
        grads: the flat gradient (head) and the buffers to push (tail, see :meth:`gradient`).
        layers: ``(name, lo, hi)`` of every parameter tensor in the flat order.
    """

    def __init__(
        self, module: nn.Module, state: Tensor | None = None, grads: Tensor | None = None
    ) -> None:
        self.module = module
        self.n_params, self.n_buffers = state_sizes(module)
        n = self.n_params + self.n_buffers
        self.state = state if state is not None else torch.empty(n, dtype=torch.float32)
        self.grads = grads if grads is not None else torch.zeros(n, dtype=torch.float32)
        if self.state.shape != (n,) or self.grads.shape != (n,):
            raise ValueError(f"flat buffers must hold {n} floats")
        self.params = self.state[: self.n_params]
        self.buffers = self.state[self.n_params :]
        self.layers: list[tuple[str, int, int]] = []
        offset = 0
        for name, p in module.named_parameters():
            k = p.numel()
            self.state[offset : offset + k].copy_(p.detach().reshape(-1))
            p.data = self.state[offset : offset + k].view_as(p)
            p.grad = self.grads[offset : offset + k].view_as(p)
            self.layers.append((name, offset, offset + k))
            offset += k
        for _, b in float_buffers(module):
            k = b.numel()
            self.state[offset : offset + k].copy_(b.detach().reshape(-1).float())
            b.data = self.state[offset : offset + k].view_as(b)
            offset += k

    def zero_grad(self) -> None:
        self.grads[: self.n_params].zero_()

    def gradient(self) -> Tensor:
        """The flat push vector after ``backward()``: the gradient, then the current buffers.

        Autograd accumulates into an existing ``.grad`` in place, so the head is normally
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
        if self.n_buffers:
            self.grads[self.n_params :].copy_(self.buffers)
        return self.grads

    def layer_norms(self) -> dict[str, float]:
        """L2 norm of each parameter tensor's gradient (vanishing gradients show here)."""
        return {name: float(self.grads[lo:hi].norm()) for name, lo, hi in self.layers}
