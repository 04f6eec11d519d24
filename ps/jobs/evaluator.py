"""Evaluation on the supervisor: the parameters at fixed steps, early stopping, the best step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ps.jobs.events import Evaluation
from ps.jobs.plan import JobPlan
from ps.spec import EarlyStopping, JobSpec
from workers.data import Dataset
from workers.evaluation import evaluate, model_loss
from workers.flat import FlatModel
from workers.models import Normalizer, TrainedModel

TRAIN_EVAL_ROWS = 20_000  # the training-loss curve is measured on at most this many rows


class Evaluator:
    """Evaluates flat parameter vectors with one network and keeps the early-stopping state.

    Args:
        spec / plan: the job's spec and step accounting.
        data: the loaded dataset.
        net: a network of the job's architecture (its parameters are overwritten).
    """

    def __init__(self, spec: JobSpec, plan: JobPlan, data: Dataset, net: nn.Module) -> None:
        self.loss = spec.model.loss
        self.loss_fn = model_loss(spec.model)
        self.early_stopping: EarlyStopping | None = spec.training.early_stopping
        self.plan = plan
        self.data = data
        self.net = net
        self.flat = FlatModel(net)
        self.last: Evaluation | None = None
        self.best: tuple[int, float, np.ndarray] | None = None  # step, value, parameters
        self.bad_evaluations = 0

    def _load(self, state: np.ndarray) -> None:
        np.copyto(self.flat.state.numpy(), state)

    def _splits(self, *names: str) -> dict[str, dict[str, float | None]]:
        d = self.data
        rows = {
            "train": (d.x_train[:TRAIN_EVAL_ROWS], d.y_train[:TRAIN_EVAL_ROWS]),
            "val": (d.x_val, d.y_val),
            "test": (d.x_test, d.y_test),
        }
        return {n: evaluate(self.net, *rows[n], self.loss, self.loss_fn) for n in names}

    def evaluate(self, step: int, params: np.ndarray, lr: float, elapsed: float) -> Evaluation:
        """Loss and accuracy of ``params`` (the parameters at ``step``) on the training and
        validation splits."""
        self._load(params)
        m = self._splits("train", "val")
        train, val = m["train"], m["val"]
        self.last = Evaluation(
            step=step,
            epoch=self.plan.epoch_at(step),
            learning_rate=lr,
            train_loss=train["loss"],
            train_accuracy=train["accuracy"],
            val_loss=val["loss"],
            val_accuracy=val["accuracy"],
            generalization_gap=None if val["loss"] is None else val["loss"] - train["loss"],
            elapsed_s=elapsed,
        )
        return self.last

    def should_stop(self, ev: Evaluation, params: np.ndarray) -> bool:
        """Fold an evaluation into the early-stopping state; True once patience runs out."""
        es = self.early_stopping
        if es is None:
            return False
        value = getattr(ev, es.monitor)  # the monitor names are evaluation fields
        if value is not None and (self.best is None or _improves(value, self.best[1], es)):
            self.best = (ev.step, value, params)
            self.bad_evaluations = 0
        else:
            self.bad_evaluations += 1
        return self.bad_evaluations >= es.patience

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], np.ndarray | None]:
        """(checkpoint metadata, best parameters or None)."""
        meta = {
            "best_step": self.best[0] if self.best else None,
            "best_value": self.best[1] if self.best else None,
            "bad_evaluations": self.bad_evaluations,
        }
        return meta, self.best[2] if self.best else None

    def load_state(
        self,
        meta: dict[str, Any] | None,
        best: np.ndarray | None,
        history: list[dict[str, Any]] = (),
    ) -> None:
        """Continue from a checkpoint's state (None: from the start) and the evaluations
        recorded up to it (the last one is not repeated if training is already over)."""
        meta = meta or {}
        self.bad_evaluations = int(meta.get("bad_evaluations", 0))
        step = meta.get("best_step")
        self.best = None if step is None or best is None else (step, meta["best_value"], best)
        self.last = None
        if history and meta.get("version") == history[-1]["step"]:
            fields = {k: v for k, v in history[-1].items() if k != "type"}
            self.last = Evaluation(**fields)

    # -- the end -----------------------------------------------------------------------------
    def exported(self, params: np.ndarray, step: int) -> tuple[np.ndarray, int]:
        """The parameters to export: the best evaluated ones with ``restore_best``, else these."""
        es = self.early_stopping
        if es is not None and es.restore_best and self.best is not None:
            return self.best[2], self.best[0]
        return params, step

    def trained_model(self) -> TrainedModel:
        """The network as loaded last (see :meth:`final_metrics`) with the input normalization."""
        d = self.data
        shift = None if d.shift is None else torch.from_numpy(d.shift)
        scale = None if d.scale is None else torch.from_numpy(d.scale)
        return TrainedModel(self.net, Normalizer(shift, scale), self.loss, d.classes, d.inputs)

    def final_metrics(self, params: np.ndarray) -> dict[str, float | None]:
        """train/val/test loss and accuracy of ``params`` (left loaded in the network)."""
        self._load(params)
        m = self._splits("train", "val", "test")
        return {f"{split}_{k}": v for split, values in m.items() for k, v in values.items()}


def _improves(value: float, best: float, es: EarlyStopping) -> bool:
    if es.monitor == "val_accuracy":
        return value > best + es.min_delta
    return value < best - es.min_delta
