"""Per-row update rules for embedding tables: ``sparse_optimizer: {name: sgd|adagrad|adam|ftrl}``.

A rule updates only the rows a step touched, and a row's state (accumulators, moments, its own
step count) advances only when the row is touched — the *lazy* form. For SGD and AdaGrad this is
exactly what a dense optimizer does to those rows (a zero gradient leaves them unchanged). Adam
differs from dense ``torch.optim.Adam``, whose moments keep decaying and moving untouched rows;
it also differs from ``torch.optim.SparseAdam``, which bias-corrects with the number of steps
of the whole table: here a row's bias correction uses the number of times *that row* was
updated, so a row first seen late starts with a properly scaled step. FTRL-proximal (McMahan et
al., KDD 2013) keeps ``z`` and ``n`` per coordinate and gives exact zeros under ``l1``.

Rules work on gathered copies of the touched rows (``(k, width)`` tensors) in place; the table
scatters them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ps.errors import SpecError, clip
from ps.optim.config import SparseOptimizerConfig
from ps.optim.hyper import Hyper, betas, check, non_negative, positive, resolve


class RowRule:
    """One lazy per-row rule. ``state`` names its per-coordinate buffers (each ``(rows, width)``
    float32, checkpointed with the table); ``initial`` their value for a new row."""

    name: ClassVar[str]
    lr_default: ClassVar[float]
    hypers: ClassVar[tuple[Hyper, ...]] = ()
    state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: SparseOptimizerConfig) -> None:
        self.lr = float(config.lr)
        self.hp = {h.name: config.hypers[h.name] for h in self.hypers}

    def initial(self, name: str) -> float:
        return 0.0

    def apply(self, w: Tensor, g: Tensor, state: dict[str, Tensor], steps: Tensor) -> None:
        """Update rows ``w`` with gradients ``g`` in place; ``steps`` (``(k, 1)``, float) is each
        row's update number, 1-based, including this one. ``g`` may be overwritten."""
        raise NotImplementedError


class RowSGD(RowRule):
    """``w ← w − lr·(g + l2·w)``."""

    name, lr_default = "sgd", 0.01
    hypers = (Hyper("l2", 0.0, non_negative),)

    def apply(self, w, g, state, steps):
        if self.hp["l2"]:
            g.add_(w, alpha=self.hp["l2"])
        w.add_(g, alpha=-self.lr)


class RowAdagrad(RowRule):
    """As ``torch.optim.Adagrad`` on each touched row: ``g ← g + l2·w``; ``s ← s + g²``;
    ``w ← w − lr·g / (√s + eps)``."""

    name, lr_default = "adagrad", 0.05
    hypers = (
        Hyper("initial_accumulator_value", 0.0, non_negative),
        Hyper("eps", 1e-10, non_negative),
        Hyper("l2", 0.0, non_negative),
    )
    state = ("sum",)

    def initial(self, name):
        return self.hp["initial_accumulator_value"]

    def apply(self, w, g, state, steps):
        if self.hp["l2"]:
            g.add_(w, alpha=self.hp["l2"])
        s = state["sum"]
        s.addcmul_(g, g)
        w.addcdiv_(g, s.sqrt().add_(self.hp["eps"]), value=-self.lr)


class RowAdam(RowRule):
    """As ``torch.optim.Adam`` applied to each row on its own: moments and the bias correction
    advance with the row's own update count."""

    name, lr_default = "adam", 1e-3
    hypers = (
        Hyper("betas", (0.9, 0.999), betas),
        Hyper("eps", 1e-8, non_negative),
        Hyper("l2", 0.0, non_negative),
    )
    state = ("exp_avg", "exp_avg_sq")

    def apply(self, w, g, state, steps):
        b1, b2 = self.hp["betas"]
        if self.hp["l2"]:
            g.add_(w, alpha=self.hp["l2"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        correction1 = 1 - torch.pow(b1, steps)
        correction2_sqrt = (1 - torch.pow(b2, steps)).sqrt_()
        denom = (v.sqrt() / correction2_sqrt).add_(self.hp["eps"])
        w.addcdiv_(m, denom * correction1, value=-self.lr)


class RowFTRL(RowRule):
    r"""FTRL-proximal (McMahan et al., 2013, Algorithm 1), per coordinate, with ``lr`` = α::

        σ ← (√(n + g²) − √n) / α;   z ← z + g − σ·w;   n ← n + g²
        w ← 0                                   if |z| ≤ l1
        w ← −(z − sign(z)·l1) / ((β + √n)/α + l2)   otherwise

    A row's initial value enters through ``z`` at its first update (so factorization-machine
    factors need not start at zero). ``l1`` makes coordinates exactly zero.
    """

    name, lr_default = "ftrl", 0.05
    hypers = (
        Hyper("beta", 1.0, non_negative),
        Hyper("l1", 0.0, non_negative),
        Hyper("l2", 0.0, non_negative),
        Hyper("initial_accumulator_value", 0.1, non_negative),
    )
    state = ("z", "n")

    def initial(self, name):
        return self.hp["initial_accumulator_value"] if name == "n" else 0.0

    def apply(self, w, g, state, steps):
        alpha, beta, l1, l2 = self.lr, self.hp["beta"], self.hp["l1"], self.hp["l2"]
        z, n = state["z"], state["n"]
        n_new = n + g * g
        sigma = (n_new.sqrt() - n.sqrt()).div_(alpha)
        z.add_(g).sub_(sigma * w)
        n.copy_(n_new)
        shrunk = z - z.sign() * l1
        value = shrunk.neg_().div_((beta + n.sqrt()).div_(alpha).add_(l2))
        w.copy_(torch.where(z.abs() > l1, value, torch.zeros_like(value)))


ROW_RULES: dict[str, type[RowRule]] = {r.name: r for r in (RowSGD, RowAdagrad, RowAdam, RowFTRL)}
DEFAULT_SPARSE_OPTIMIZER = {"name": "adagrad", "lr": 0.05}


def resolve_sparse_optimizer(
    cfg: Mapping[str, Any] | SparseOptimizerConfig | None,
) -> SparseOptimizerConfig:
    """Check the ``sparse_optimizer:`` section and return it typed, defaults filled in.

    Raises:
        SpecError: an unknown rule, a dense rule without a lazy per-row form, an unknown or bad
            hyperparameter, naming the key path.
    """
    if isinstance(cfg, SparseOptimizerConfig):
        return cfg
    cfg = dict(cfg or DEFAULT_SPARSE_OPTIMIZER)
    name = cfg.pop("name", DEFAULT_SPARSE_OPTIMIZER["name"])
    if not isinstance(name, str) or name not in ROW_RULES:
        from ps.optim.build import RULES

        why = (
            f"{name!r} has no lazy per-row form (its state would move rows a step does not touch)"
            if isinstance(name, str) and name in RULES
            else f"unknown sparse optimizer {clip(name)}"
        )
        raise SpecError("sparse_optimizer.name", f"{why}; choose from {tuple(ROW_RULES)}")
    rule = ROW_RULES[name]
    lr = check("sparse_optimizer.lr", Hyper("lr", None, positive), cfg.pop("lr", rule.lr_default))
    hp = resolve("sparse_optimizer", rule.hypers, cfg, name)
    return SparseOptimizerConfig(name, lr, hp)


def build_row_rule(config: Mapping[str, Any] | SparseOptimizerConfig) -> RowRule:
    """The rule of a ``sparse_optimizer`` section (resolved here if it is not yet)."""
    config = resolve_sparse_optimizer(config)
    return ROW_RULES[config.name](config)
