"""Evaluation on the supervisor: the parameters at fixed steps, early stopping, the best step.

With embedding tables the evaluator needs rows too. For the built-in models, which say which
rows a batch reads, the shards capture at each evaluation step only the rows of the ids in the
evaluated data (:meth:`Evaluator.eval_keys`); for other models, and when the best step is to be
exported, they capture whole tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ps.jobs.events import Evaluation
from ps.jobs.hooks import pause_at
from ps.jobs.plan import JobPlan
from ps.jobs.snapshot import ModelState
from ps.spec import EarlyStopping, JobSpec
from workers.data import Dataset
from workers.evaluation import evaluate, model_loss
from workers.flat import FlatModel
from workers.models import Normalizer, TrainedModel, TrainedTableModel, save_model
from workers.sparse import load_tables, row_requests, tables_of


class Evaluator:
    """Evaluates flat parameter vectors with one network and keeps the early-stopping state.

    Args:
        spec / plan: the job's spec and step accounting.
        data: the loaded dataset.
        net: a network of the job's architecture (its parameters are overwritten).
    """

    def __init__(self, spec: JobSpec, plan: JobPlan, data: Dataset, net: nn.Module) -> None:
        self.loss = spec.model.loss
        self.model_spec = spec.model
        self.loss_fn = model_loss(spec.model)
        self.early_stopping: EarlyStopping | None = spec.training.early_stopping
        self.plan = plan
        self.data = data
        self.net = net
        self.flat = FlatModel(net)
        self.tables = tables_of(net)
        self.last: Evaluation | None = None
        self.best: tuple[int, float, ModelState] | None = None  # step, value, state
        self.bad_evaluations = 0
        self._train_sample = _sample(len(data.y_train), spec.training.eval_train_rows, spec.seed)

    @property
    def whole_tables(self) -> bool:
        """Whether evaluation snapshots must hold whole tables (see the module docstring)."""
        es = self.early_stopping
        restore = es is not None and es.restore_best
        return bool(self.tables) and (restore or not hasattr(self.net, "row_ids"))

    def eval_keys(self) -> dict[int, np.ndarray]:
        """Per table, the ids evaluation reads (the built-in models say which)."""
        if not self.tables or self.whole_tables:
            return {}
        keys: dict[int, list[np.ndarray]] = {}
        for name in ("train", "val", "test"):
            ids = self._rows(name)[2]
            if ids is not None and len(ids):
                for table, k in row_requests(self.net, torch.from_numpy(ids)):
                    keys.setdefault(table, []).append(k)
        return {t: np.unique(np.concatenate(k)) for t, k in keys.items()}

    def _load(self, state: ModelState) -> None:
        np.copyto(self.flat.state.numpy(), state.params)
        load_tables(self.net, dict(enumerate(state.rows)))

    def _rows(self, name: str) -> tuple:
        x, y, ids = self.data.split(name)
        if name == "train":  # the training figures come from a fixed, bounded sample
            rows = self._train_sample
            return x[rows], y[rows], None if ids is None else ids[rows]
        return x, y, ids

    def _splits(self, *names: str) -> dict[str, dict[str, float | None]]:
        out = {}
        for n in names:
            x, y, ids = self._rows(n)
            out[n] = evaluate(self.net, x, y, self.loss, self.loss_fn, ids)
        return out

    def evaluate(self, step: int, state: ModelState, lr: float, elapsed: float) -> Evaluation:
        """Loss and accuracy (and AUC for ``bce``) of the model's ``state`` at ``step`` on the
        training and validation splits."""
        self._load(state)
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
            train_auc=train["auc"],
            val_auc=val["auc"],
        )
        return self.last

    def should_stop(self, ev: Evaluation, state: ModelState) -> bool:
        """Fold an evaluation into the early-stopping state; True once patience runs out."""
        es = self.early_stopping
        if es is None:
            return False
        value = getattr(ev, es.monitor)  # the monitor names are evaluation fields
        if value is not None and (self.best is None or _improves(value, self.best[1], es)):
            self.best = (ev.step, value, state)
            self.bad_evaluations = 0
        else:
            self.bad_evaluations += 1
        return self.bad_evaluations >= es.patience

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], ModelState | None]:
        """(checkpoint metadata, best state or None)."""
        meta = {
            "best_step": self.best[0] if self.best else None,
            "best_value": self.best[1] if self.best else None,
            "bad_evaluations": self.bad_evaluations,
        }
        return meta, self.best[2] if self.best else None

    def load_state(
        self,
        meta: dict[str, Any] | None,
        best: ModelState | None,
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
    def exported(self, state: ModelState, step: int) -> tuple[ModelState, int]:
        """The state to export: the best evaluated one with ``restore_best``, else this one."""
        es = self.early_stopping
        if es is not None and es.restore_best and self.best is not None:
            return self.best[2], self.best[0]
        return state, step

    def trained_model(self) -> TrainedModel:
        """The network as loaded last (see :meth:`final_metrics`) with the input normalization."""
        d = self.data
        shift = None if d.shift is None else torch.from_numpy(d.shift)
        scale = None if d.scale is None else torch.from_numpy(d.scale)
        normalizer = Normalizer(shift, scale)
        model = TrainedModel(self.net, normalizer, self.loss, d.classes, d.inputs)
        if d.fields:
            return TrainedTableModel.of(model, d.fields, d.numeric, d.buckets)
        return model

    def finish(self, state: ModelState, version: int, path: Path, n_outputs: int):
        """The end of training: (the exported step, the final metrics, the trained model), the
        model saved to ``path``. Slow on a large test split: callers run it off their loop."""
        pause_at("final-model")
        exported, exported_step = self.exported(state, version)
        final = self.final_metrics(exported)
        model = self.trained_model()
        save_model(path, self.model_spec, model, n_outputs)
        return exported_step, final, model

    def final_metrics(self, state: ModelState) -> dict[str, float | None]:
        """train/val/test loss and accuracy (and AUC) of ``state`` (left loaded in the
        network)."""
        self._load(state)
        m = self._splits("train", "val", "test")
        return {f"{split}_{k}": v for split, values in m.items() for k, v in values.items()}


def _improves(value: float, best: float, es: EarlyStopping) -> bool:
    if es.monitor == "val_accuracy":
        return value > best + es.min_delta
    return value < best - es.min_delta


def _sample(n: int, size: int, seed: int) -> np.ndarray | slice:
    """The rows of an ``n``-row training split that its figures are measured on: all of them,
    or ``size`` drawn once with ``seed`` (in split order), the same at every evaluation and
    after a restart."""
    if n <= size:
        return slice(None)
    rng = np.random.default_rng([seed, 0x7E57])
    return np.sort(rng.choice(n, size=size, replace=False))
