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


def forward(net: nn.Module, x: Tensor, ids: Tensor | None = None) -> Tensor:
    """The model's outputs: ``net(x)``, or ``net(ids, x)`` with categorical ids."""
    return net(x) if ids is None else net(ids, x)


@torch.no_grad()
def evaluate(
    net: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    loss: str,
    fn: Loss | None = None,
    ids: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Mean loss (``fn``, else the ``loss`` kind's), accuracy (None for mse) and, for ``bce``,
    the ROC AUC (None where only one class occurs) of ``net`` in eval mode on (x, y); empty →
    Nones. For ``bce`` the loss is the log loss."""
    if len(x) == 0:
        return {"loss": None, "accuracy": None, "auc": None}
    was_training = net.training
    net.eval()
    fn = fn or loss_fn(loss)
    total, correct, scores = 0.0, 0, []
    for lo in range(0, len(x), EVAL_BATCH):
        xb = torch.from_numpy(np.ascontiguousarray(x[lo : lo + EVAL_BATCH]))
        yb = torch.from_numpy(np.ascontiguousarray(y[lo : lo + EVAL_BATCH]))
        idb = None if ids is None else torch.from_numpy(ids[lo : lo + EVAL_BATCH])
        out = forward(net, xb, idb)
        total += float(fn(out, yb)) * len(xb)
        if loss == "cross_entropy":
            correct += int((out.argmax(-1) == yb).sum())
        elif loss == "bce":
            correct += int(((out.squeeze(-1) > 0).float() == yb).sum())
            scores.append(out.squeeze(-1).numpy())
    net.train(was_training)
    accuracy = None if loss == "mse" else correct / len(x)
    auc = roc_auc(y, np.concatenate(scores)) if scores else None
    return {"loss": total / len(x), "accuracy": accuracy, "auc": auc}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for 0/1 ``labels`` (None: one class only)."""
    if len(np.unique(labels)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))
