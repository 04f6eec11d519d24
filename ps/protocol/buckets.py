"""Histograms as plain data, filled in the step loop and shipped through Ray.

The bucket bounds here are the single definition: shards and workers fill :class:`Buckets`,
:mod:`ps.metrics` renders them as Prometheus histograms with the same bounds.
"""

from __future__ import annotations

import bisect
from typing import Any

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
STALENESS_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128)


class Buckets:
    """A histogram as plain data: counts per upper bound (non-cumulative), +Inf, sum.

    Cheap to fill in a hot loop and to ship through Ray; merged by adding.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += n
        self.sum += value * n

    def to_dict(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum}

    def add(self, data: dict[str, Any]) -> None:
        for i, c in enumerate(data["counts"]):
            self.counts[i] += c
        self.sum += data["sum"]
