"""The optimizer sections of a job spec, resolved once into typed values.

:func:`ps.optim.resolve_optimizer`, :func:`ps.optim.resolve_regularization` and
:func:`ps.optim.rows.resolve_sparse_optimizer` check a section and return one of these; the job
spec holds them, and everything downstream reads attributes, not string keys. ``to_dict`` gives
back the section in the job-spec contract's shape (``shared/JOBSPEC.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class OptimizerConfig:
    """A resolved ``optimizer:`` section.

    Attributes:
        name: the rule (``sgd``, ``adam``, …).
        lr: the base learning rate.
        hypers: the rule's own hyperparameters, torch.optim-named, defaults filled in (read-only
            by convention).
        schedule: the checked ``schedule`` section; a cosine's ``t_max`` is None until
            :meth:`for_steps` fills it with the job's total steps.
        clip_grad_norm: clip the global gradient norm to this, or None.
    """

    name: str
    lr: float
    hypers: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=lambda: {"type": "constant"})
    clip_grad_norm: float | None = None

    def for_steps(self, total_steps: int | None) -> OptimizerConfig:
        """The same optimizer with the schedule's missing ``t_max`` set to ``total_steps``."""
        if "t_max" not in self.schedule or self.schedule["t_max"] is not None:
            return self
        return replace(self, schedule={**self.schedule, "t_max": total_steps})

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lr": self.lr,
            **self.hypers,
            "schedule": dict(self.schedule),
            "clip_grad_norm": self.clip_grad_norm,
        }


@dataclass(frozen=True)
class RegularizationConfig:
    """A resolved ``regularization:`` section: coupled L2, and L1 as a subgradient or a
    proximal step."""

    l2: float = 0.0
    l1: float = 0.0
    l1_mode: str = "subgradient"

    def to_dict(self) -> dict[str, Any]:
        return {"l2": self.l2, "l1": self.l1, "l1_mode": self.l1_mode}


@dataclass(frozen=True)
class SparseOptimizerConfig:
    """A resolved ``sparse_optimizer:`` section (the lazy per-row rule of embedding tables)."""

    name: str
    lr: float
    hypers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lr": self.lr, **self.hypers}
