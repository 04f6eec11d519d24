"""The model's flat state and gradient on the device where it computes."""

from __future__ import annotations

import torch

from workers.flat import FlatModel


class DeviceMirror:
    """The model's flat state and gradient where it computes.

    On the CPU the model's parameters, buffers and gradients are views into the transport's
    (shared-memory) buffers: nothing to copy. On a GPU they live on the device, and each step
    copies the state in and the gradient out through pinned host memory (asynchronous DMA).
    """

    def __init__(self, net: torch.nn.Module, state: torch.Tensor, grads: torch.Tensor) -> None:
        self.host_state, self.host_grads = state, grads
        device = next(net.parameters()).device
        self.on_host = device.type == "cpu"
        if self.on_host:
            self.flat = FlatModel(net, state, grads)
            return
        n = state.numel()
        self.flat = FlatModel(
            net,
            torch.empty(n, device=device),
            torch.zeros(n, device=device),
        )
        self.pinned_state = torch.empty(n, pin_memory=True)
        self.pinned_grads = torch.empty(n, pin_memory=True)

    def load(self) -> None:
        """Bring the pulled state to the model (a no-op on the CPU)."""
        if not self.on_host:
            self.pinned_state.copy_(self.host_state)
            self.flat.state.copy_(self.pinned_state, non_blocking=True)

    def store(self) -> torch.Tensor:
        """The push vector in host memory (the transport's gradient buffer)."""
        if not self.on_host:
            self.pinned_grads.copy_(self.flat.grads, non_blocking=True)
            torch.cuda.current_stream().synchronize()
            self.host_grads.copy_(self.pinned_grads)
        return self.host_grads
