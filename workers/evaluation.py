"""Losses and evaluation of a model on a split."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ps.spec import ModelSpec

EVAL_BATCH = 8192
Loss = Callable[[Tensor, Tensor], Tensor]


def loss_fn(loss: str) -> Loss:
    """The torch loss for a spec's ``model.loss`` (mean over the batch)."""
    if loss == "cross_entropy":
        return nn.functional.cross_entropy
    if loss == "bce":
        return lambda out, y: nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)
    return nn.functional.mse_loss


def model_loss(spec: ModelSpec) -> Loss:
    """The model's loss: the user's ``model.loss_fn`` (imported here), else ``model.loss``."""
    if spec.loss_fn:
        from workers.models import load_callable

        return load_callable(spec.loss_fn, "model.loss_fn")
    return loss_fn(spec.loss)


@torch.no_grad()
def evaluate(
    net: nn.Module, x: np.ndarray, y: np.ndarray, loss: str, fn: Loss | None = None
) -> dict[str, float | None]:
    """Mean loss (``fn``, else the ``loss`` kind's) and accuracy (None for mse) of ``net`` in
    eval mode on (x, y); empty → Nones."""
    if len(x) == 0:
        return {"loss": None, "accuracy": None}
    was_training = net.training
    net.eval()
    fn = fn or loss_fn(loss)
    total, correct = 0.0, 0
    for lo in range(0, len(x), EVAL_BATCH):
        xb = torch.from_numpy(np.ascontiguousarray(x[lo : lo + EVAL_BATCH]))
        yb = torch.from_numpy(np.ascontiguousarray(y[lo : lo + EVAL_BATCH]))
        out = net(xb)
        total += float(fn(out, yb)) * len(xb)
        if loss == "cross_entropy":
            correct += int((out.argmax(-1) == yb).sum())
        elif loss == "bce":
            correct += int(((out.squeeze(-1) > 0).float() == yb).sum())
    net.train(was_training)
    accuracy = None if loss == "mse" else correct / len(x)
    return {"loss": total / len(x), "accuracy": accuracy}
