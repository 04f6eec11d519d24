"""Gradient sources shared by the optimizer tests: a random quadratic and a small MLP."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

GradFn = Callable[[Tensor], Tensor]


def quadratic(dim: int = 64, seed: int = 0) -> tuple[Tensor, GradFn]:
    """f(w) = ½ wᵀAw − bᵀw with A symmetric positive definite; returns (w0, ∇f)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=g) / dim**0.5
    a = m @ m.T + 0.1 * torch.eye(dim)
    b = torch.randn(dim, generator=g)
    w0 = torch.randn(dim, generator=g)
    return w0, lambda w: a @ w - b


def mlp(seed: int = 0) -> tuple[Tensor, GradFn]:
    """A 2-layer MLP on fixed random data; returns (flat initial params, flat loss gradient)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    shapes = [p.shape for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    w0 = nn.utils.parameters_to_vector(model.parameters()).detach().clone()

    def grad(w: Tensor) -> Tensor:
        w = w.detach().clone().requires_grad_(True)
        views, offset = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            n = shape.numel()
            views[name] = w[offset : offset + n].view(shape)
            offset += n
        out = torch.func.functional_call(model, views, (x,))
        loss = nn.functional.cross_entropy(out, y)
        (g,) = torch.autograd.grad(loss, w)
        return g

    return w0, grad


PROBLEMS = {"quadratic": quadratic, "mlp": mlp}
