"""Learning-rate schedules: the learning rate of update k (0-based) as a closed form.

``schedule`` in the spec is a dict with ``type`` and that type's keys:

============== ======================================= ==========================================
type           keys (defaults)                         lr_k
============== ======================================= ==========================================
constant       —                                       lr
step           step_size (required), gamma (0.1)       lr · gamma^floor(k / step_size)
exponential    gamma (required)                        lr · gamma^k
cosine         t_max (job's total steps), min_lr (0)   min_lr + (lr - min_lr)(1 + cos(π·k/t_max))/2,
                                                       min_lr for k ≥ t_max
warmup_cosine  warmup_steps (required), t_max (job's   lr·(k+1)/warmup_steps for k < warmup_steps,
               total steps), min_lr (0)                then cosine over the remaining t_max − warmup
============== ======================================= ==========================================

step, exponential and cosine equal torch.optim.lr_scheduler's StepLR, ExponentialLR and
CosineAnnealingLR (for k < t_max) stepped once per update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ps.errors import SpecError, clip
from ps.optim.hyper import Hyper, check, non_negative, positive

Schedule = Callable[[int], float]


def _steps(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be an integer >= 1")
    return value


_KEYS: dict[str, tuple[Hyper, ...]] = {
    "constant": (),
    "step": (Hyper("step_size", None, _steps), Hyper("gamma", 0.1, positive)),
    "exponential": (Hyper("gamma", None, positive),),
    "cosine": (Hyper("t_max", None, _steps), Hyper("min_lr", 0.0, non_negative)),
    "warmup_cosine": (
        Hyper("warmup_steps", None, _steps),
        Hyper("t_max", None, _steps),
        Hyper("min_lr", 0.0, non_negative),
    ),
}
SCHEDULE_TYPES = tuple(_KEYS)


def resolve_schedule(
    cfg: Mapping[str, Any] | None,
    total_steps: int | None,
    path: str = "optimizer.schedule",
    defer_t_max: bool = False,
) -> dict[str, Any]:
    """Check a schedule section and fill its defaults (``t_max`` from ``total_steps``).

    With ``defer_t_max`` a missing ``t_max`` stays ``None`` ("the job's total steps", known only
    once the data is loaded) instead of being an error.

    Raises:
        SpecError: unknown type or key, a missing required key, or a value out of range.
    """
    if cfg is not None and not isinstance(cfg, Mapping):
        raise SpecError(path, f"must be a mapping, got {type(cfg).__name__}")
    cfg = dict(cfg or {"type": "constant"})
    kind = cfg.pop("type", "constant")
    if not isinstance(kind, str) or kind not in _KEYS:
        raise SpecError(
            f"{path}.type", f"unknown schedule {clip(kind)} (choose from {SCHEDULE_TYPES})"
        )
    out: dict[str, Any] = {"type": kind}
    for name in cfg:
        if name not in {h.name for h in _KEYS[kind]}:
            allowed = ", ".join(h.name for h in _KEYS[kind]) or "no other keys"
            raise SpecError(f"{path}.{name}", f"unknown field for schedule {kind!r} ({allowed})")
    for h in _KEYS[kind]:
        if h.name in cfg and cfg[h.name] is not None:
            out[h.name] = check(f"{path}.{h.name}", h, cfg[h.name])
        elif h.name == "t_max" and (total_steps or defer_t_max):
            out[h.name] = total_steps
        elif h.default is None:
            hint = " (or a training budget to derive it from)" if h.name == "t_max" else ""
            raise SpecError(f"{path}.{h.name}", f"required for schedule {kind!r}{hint}")
        else:
            out[h.name] = h.default
    if kind == "warmup_cosine" and out["t_max"] and out["warmup_steps"] >= out["t_max"]:
        raise SpecError(
            f"{path}.warmup_steps",
            f"must be < t_max ({out['warmup_steps']} >= {out['t_max']})",
        )
    return out


def _cosine(lr: float, min_lr: float, k: int, t_max: int) -> float:
    if k >= t_max:
        return min_lr
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * k / t_max)) / 2


def make_schedule(lr: float, cfg: Mapping[str, Any]) -> Schedule:
    """Return ``k -> lr_k`` for a schedule already checked by :func:`resolve_schedule`."""
    kind = cfg["type"]
    if kind == "constant":
        return lambda k: lr
    if kind == "step":
        size, gamma = cfg["step_size"], cfg["gamma"]
        return lambda k: lr * gamma ** (k // size)
    if kind == "exponential":
        gamma = cfg["gamma"]
        return lambda k: lr * gamma**k
    if kind == "cosine":
        return lambda k: _cosine(lr, cfg["min_lr"], k, cfg["t_max"])
    warm, t_max, min_lr = cfg["warmup_steps"], cfg["t_max"], cfg["min_lr"]
    return lambda k: (
        lr * (k + 1) / warm if k < warm else _cosine(lr, min_lr, k - warm, t_max - warm)
    )
