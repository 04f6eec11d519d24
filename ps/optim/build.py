"""``build(optimizer, regularization)``: the spec's sections to one in-place optimizer.

One step, in order (each piece is separate, optax style)::

    clip (global norm)  ->  + l1·sign(w) (subgradient mode)  ->  rule with coupled L2 and lr_k
                        ->  soft-threshold by lr_k·l1 (proximal mode)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ps.errors import SpecError, SpecProblems, clip
from ps.optim.adam import Adam, Adamax, AdamW
from ps.optim.adaptive import Adadelta, Adagrad, RMSprop
from ps.optim.config import OptimizerConfig, RegularizationConfig
from ps.optim.hyper import Hyper, check, non_negative, positive, resolve
from ps.optim.regularize import clip_grad_norm_, l1_proximal_, l1_subgradient_
from ps.optim.rule import Rule
from ps.optim.schedules import make_schedule, resolve_schedule
from ps.optim.sgd import NAG, SGD, Momentum

RULES: dict[str, type[Rule]] = {
    r.name: r for r in (SGD, Momentum, NAG, Adagrad, Adadelta, RMSprop, Adam, Adamax, AdamW)
}
L1_MODES = ("subgradient", "proximal")
_REGULARIZATION = (Hyper("l2", 0.0, non_negative), Hyper("l1", 0.0, non_negative))


def resolve_optimizer(
    cfg: Mapping[str, Any] | OptimizerConfig,
    total_steps: int | None = None,
    defer_t_max: bool = False,
) -> OptimizerConfig:
    """Check the ``optimizer:`` section and return it typed, with every default filled in.

    ``defer_t_max`` leaves a schedule's missing ``t_max`` as ``None``, for
    :meth:`OptimizerConfig.for_steps` to fill from the job's total steps once the data is
    loaded (a spec is validated before that). An already resolved section is returned as it is
    (its ``t_max`` filled from ``total_steps`` if given).

    Raises:
        SpecError: naming the key path, the value and the allowed range or choices.
    """
    if isinstance(cfg, OptimizerConfig):
        return cfg.for_steps(total_steps) if total_steps else cfg
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if not isinstance(name, str) or name not in RULES:
        raise SpecError(
            "optimizer.name", f"unknown optimizer {clip(name)} (choose from {tuple(RULES)})"
        )
    rule, problems = RULES[name], SpecProblems()  # every problem of the section at once
    lr = problems.attempt(
        check, "optimizer.lr", Hyper("lr", None, positive), cfg.pop("lr", rule.lr_default)
    )
    schedule = problems.attempt(
        lambda: resolve_schedule(cfg.pop("schedule", None), total_steps, defer_t_max=defer_t_max)
    )
    clip_norm = cfg.pop("clip_grad_norm", None)
    if clip_norm is not None:
        clip_norm = problems.attempt(
            check, "optimizer.clip_grad_norm", Hyper("clip_grad_norm", None, positive), clip_norm
        )
    if "weight_decay" in cfg and name != "adamw":
        cfg.pop("weight_decay")
        problems.add(
            SpecError(
                "optimizer.weight_decay",
                f"unknown field for optimizer {name!r}: coupled weight decay is regularization.l2 "
                "(only adamw takes a decoupled weight_decay)",
            )
        )
    hp = problems.attempt(resolve, "optimizer", rule.hypers, cfg, name)
    problems.raise_any()
    rule(hp)  # cross-field checks (e.g. Nesterov needs momentum) live in the rule's constructor
    return OptimizerConfig(name, lr, hp, schedule, clip_norm)


def resolve_regularization(
    cfg: Mapping[str, Any] | RegularizationConfig | None,
) -> RegularizationConfig:
    """Check the ``regularization:`` section and return it typed, with defaults filled in."""
    if isinstance(cfg, RegularizationConfig):
        return cfg
    cfg = dict(cfg or {})
    mode = cfg.pop("l1_mode", "subgradient")
    if mode not in L1_MODES:
        raise SpecError(
            "regularization.l1_mode", f"unknown mode {clip(mode)} (choose from {L1_MODES})"
        )
    return RegularizationConfig(
        **resolve("regularization", _REGULARIZATION, cfg, "regularization"), l1_mode=mode
    )


@dataclass
class OptimizerState:
    """Everything an optimizer keeps for one flat buffer.

    ``step`` counts the updates applied; ``tensors`` are the rule's flat buffers (checkpointed);
    ``scratch`` is a work buffer of the same length, reused by every step and never saved.
    """

    step: int
    tensors: dict[str, Tensor]
    scratch: Tensor = field(repr=False)


class Optimizer:
    """An update rule with its schedule, regularization and clipping, applied in place.

    Use :func:`build` to make one.
    """

    def __init__(self, optimizer: OptimizerConfig, regularization: RegularizationConfig) -> None:
        self.config = optimizer
        self.regularization = regularization
        self.rule = RULES[optimizer.name](optimizer.hypers)
        self.lr_at = make_schedule(optimizer.lr, optimizer.schedule)
        self._l1, self._l2 = regularization.l1, regularization.l2
        self._proximal = regularization.l1_mode == "proximal"
        self._clip = optimizer.clip_grad_norm

    def init(self, params: Tensor) -> OptimizerState:
        """Allocate the state for ``params``, a 1-D float32 tensor."""
        _check_flat(params, "params")
        return OptimizerState(0, self.rule.init(params), torch.empty_like(params))

    def step(
        self, params: Tensor, grads: Tensor, state: OptimizerState, grad_norm: float | None = None
    ) -> float:
        """Apply one update to ``params`` in place.

        Args:
            params: the flat parameters (1-D float32, contiguous).
            grads: the flat gradient, same shape. It is used as scratch space and overwritten.
            state: from :meth:`init` or :meth:`load_state_dict`; advanced by one step.
            grad_norm: the global gradient norm, when ``grads`` is a shard's slice and clipping
                must use the norm of the whole gradient.

        Returns:
            The learning rate used for this update.
        """
        if grads.shape != params.shape:
            raise ValueError(f"gradient shape {tuple(grads.shape)} != {tuple(params.shape)}")
        lr = self.lr_at(state.step)
        state.step += 1
        if self._clip is not None:
            clip_grad_norm_(grads, self._clip, grad_norm)
        if self._l1 and not self._proximal:
            l1_subgradient_(grads, params, self._l1, state.scratch)
        self.rule.apply(params, grads, state.tensors, state.scratch, state.step, lr, self._l2)
        if self._l1 and self._proximal:
            l1_proximal_(params, lr * self._l1, state.scratch)
        return lr

    def state_dict(self, state: OptimizerState) -> dict[str, Any]:
        """The state as plain data for a checkpoint. Tensors are shared, not copied."""
        return {
            "rule": self.rule.name,
            "step": state.step,
            "numel": state.scratch.numel(),
            "tensors": dict(state.tensors),
        }

    def load_state_dict(self, saved: Mapping[str, Any]) -> OptimizerState:
        """Rebuild a state from :meth:`state_dict` output (the tensors are copied).

        Raises:
            ValueError: if the saved state is for another rule or has other buffers.
        """
        if saved["rule"] != self.rule.name:
            raise ValueError(
                f"checkpoint is for optimizer {saved['rule']!r}, not {self.rule.name!r}"
            )
        numel = int(saved["numel"])
        tensors = {
            k: v.detach().to(torch.float32).contiguous().clone()
            for k, v in saved["tensors"].items()
        }
        expected = set(self.rule.init(torch.empty(0)))
        if set(tensors) != expected or any(t.shape != (numel,) for t in tensors.values()):
            raise ValueError(
                f"checkpoint buffers {sorted(tensors)} of {numel} floats do not match this "
                f"optimizer's {sorted(expected)}"
            )
        return OptimizerState(int(saved["step"]), tensors, torch.empty(numel))


def state_buffers(optimizer: OptimizerConfig) -> int:
    """How many flat buffers the size of the parameters the optimizer's rule keeps (for memory
    budgets)."""
    return len(RULES[optimizer.name](optimizer.hypers).init(torch.empty(0)))


def _check_flat(t: Tensor, what: str) -> None:
    if t.dim() != 1 or t.dtype != torch.float32 or not t.is_contiguous():
        raise ValueError(
            f"{what} must be a contiguous 1-D float32 tensor, got {t.dtype} {tuple(t.shape)}"
        )


def build(
    optimizer: Mapping[str, Any] | OptimizerConfig,
    regularization: Mapping[str, Any] | RegularizationConfig | None = None,
    total_steps: int | None = None,
) -> Optimizer:
    """Build the optimizer a job spec describes.

    Args:
        optimizer: the spec's ``optimizer:`` section (``name``, ``lr``, torch.optim-named
            hyperparameters, ``schedule``, ``clip_grad_norm``).
        regularization: the spec's ``regularization:`` section (``l2``, ``l1``, ``l1_mode``).
        total_steps: the job's number of updates, the default ``t_max`` of cosine schedules.

    Returns:
        An :class:`Optimizer`: ``state = opt.init(params)``, then ``opt.step(params, grads, state)``.

    Raises:
        SpecError (a ValueError): an unknown name or key, or a value outside its range.
    """
    return Optimizer(
        resolve_optimizer(optimizer, total_steps), resolve_regularization(regularization)
    )
