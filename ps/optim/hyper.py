"""Hyperparameter declarations: name, default and allowed range, checked in one place."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ps.errors import SpecError, SpecProblems, clip, did_you_mean


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter of an update rule.

    ``convert`` normalizes the value (e.g. a YAML list to a tuple) and raises ``ValueError`` with
    a description of the allowed values when the value is out of range.
    """

    name: str
    default: Any
    convert: Callable[[Any], Any]


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


def positive(value: Any) -> float:
    v = _number(value)
    if v <= 0:
        raise ValueError("must be > 0")
    return v


def non_negative(value: Any) -> float:
    v = _number(value)
    if v < 0:
        raise ValueError("must be >= 0")
    return v


def unit_closed(value: Any) -> float:
    v = _number(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError("must be in [0, 1]")
    return v


def unit_open_right(value: Any) -> float:
    v = _number(value)
    if not 0.0 <= v < 1.0:
        raise ValueError("must be in [0, 1)")
    return v


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def betas(value: Any) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError("must be a pair [beta1, beta2], each in [0, 1)")
    try:
        return (unit_open_right(value[0]), unit_open_right(value[1]))
    except ValueError:
        raise ValueError("must be a pair [beta1, beta2], each in [0, 1)") from None


def check(path: str, hyper: Hyper, value: Any) -> Any:
    """Convert ``value`` for ``hyper`` or raise :class:`SpecError` naming path, value and range."""
    try:
        return hyper.convert(value)
    except (ValueError, TypeError) as exc:
        raise SpecError(path, f"invalid value {clip(value)} ({exc})") from None


def resolve(
    section: str, hypers: tuple[Hyper, ...], given: Mapping[str, Any], rule: str
) -> dict[str, Any]:
    """Fill defaults and check every given hyperparameter of ``rule``.

    Raises:
        SpecError: for an unknown name (listing the names the rule takes) or a bad value.
    """
    known = {h.name: h for h in hypers}
    problems = SpecProblems()
    for name in given:
        if name not in known:
            allowed = ", ".join(sorted(known)) or "none"
            problems.add(
                SpecError(
                    f"{section}.{name}",
                    f"unknown field for optimizer {rule!r}{did_you_mean(name, known)} "
                    f"(it takes: {allowed})",
                )
            )
    values = {
        h.name: problems.attempt(check, f"{section}.{h.name}", h, given[h.name])
        if h.name in given
        else h.default
        for h in hypers
    }
    problems.raise_any()
    return values
