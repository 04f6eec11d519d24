"""The consistency gate: one mechanism for sync, bounded staleness (SSP) and async.

Every worker has a clock, the number of gradients it has pushed. A worker at clock ``c`` may pull
only when the slowest worker's clock is at least ``c - s``:

- ``sync``: s = 0 (and the shard averages the N gradients of a step before one update);
- ``ssp``: s = ``training.staleness``;
- ``async``: s = ∞ (never waits; each gradient is applied on arrival).

The staleness of a gradient is ``c - m``, where ``c`` is the clock it was computed at and ``m``
the slowest worker's clock when its parameters were read: how many steps of some worker's
updates it may be missing. The gate keeps it ≤ s.

A shard has one gate: its dense slice and its embedding tables see the same pushes, so one set
of clocks serves both; each part reads it with its own bound (the tables may follow
``training.sparse_staleness``).
"""

from __future__ import annotations

import math


def bound_of(mode: str, staleness: int) -> float:
    """The staleness bound ``s`` of a consistency mode."""
    return {"sync": 0, "ssp": staleness, "async": math.inf}[mode]


class ClockGate:
    """Per-worker clocks and the pull condition. Pure; the shard actor waits on it.

    Args:
        workers: how many workers push.
        staleness: the default bound of :meth:`may_pull`.
    """

    def __init__(self, workers: int, staleness: float) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if staleness < 0:
            raise ValueError(f"staleness must be >= 0, got {staleness}")
        self.clocks = [0] * workers
        self.staleness = staleness

    @classmethod
    def for_mode(cls, mode: str, workers: int, staleness: int) -> ClockGate:
        return cls(workers, bound_of(mode, staleness))

    @property
    def min_clock(self) -> int:
        return min(self.clocks)

    def may_pull(self, clock: int, staleness: float | None = None) -> bool:
        """Whether a worker at ``clock`` may read now, under ``staleness`` (default: the
        gate's own bound)."""
        bound = self.staleness if staleness is None else staleness
        return self.min_clock >= clock - bound

    def tick(self, worker: int, clock: int) -> None:
        """Record that ``worker`` finished the push of step ``clock`` (its clock becomes clock)."""
        self.clocks[worker] = max(self.clocks[worker], clock)
