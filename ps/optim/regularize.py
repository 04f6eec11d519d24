"""Regularization and clipping around an update rule, all in place on flat buffers."""

from __future__ import annotations

import torch
from torch import Tensor


def l1_subgradient_(grads: Tensor, params: Tensor, l1: float, scratch: Tensor) -> None:
    """``g <- g + l1·sign(w)`` (sign(0) = 0: the subgradient chosen at zero)."""
    grads.add_(torch.sign(params, out=scratch), alpha=l1)


def l1_proximal_(params: Tensor, threshold: float, scratch: Tensor) -> None:
    """Soft-threshold: ``w <- sign(w)·max(|w| - threshold, 0)``, which gives exact zeros."""
    torch.sign(params, out=scratch)
    params.abs_().sub_(threshold).clamp_(min=0.0).mul_(scratch)


def clip_grad_norm_(grads: Tensor, max_norm: float, norm: float | None = None) -> float:
    """Scale ``grads`` so its L2 norm is at most ``max_norm``, like torch.nn.utils.clip_grad_norm_.

    Args:
        grads: the flat gradient, scaled in place.
        max_norm: the bound.
        norm: the global norm when ``grads`` is one shard's slice of a larger gradient;
            computed from ``grads`` when omitted.

    Returns:
        The norm before clipping.
    """
    total = float(torch.linalg.vector_norm(grads)) if norm is None else norm
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        grads.mul_(coef)
    return total
