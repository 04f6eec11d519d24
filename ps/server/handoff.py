"""Where a shard stops when its job is handed back to the queue, so that the checkpoint taken
there is a whole step on every shard.

Stopping a shard at once (what a cancel does) is not enough for a checkpoint: in sync mode a
step is several pushes, and one that is half taken (some workers' gradients accumulated, their
clocks advanced, no update yet) cannot be resumed from; after a stop the shard still records the
clocks of the pushes it refuses. So a hand-back stops in two steps, across all shards:

1. :meth:`HandOff.hold`: each shard lets no worker pull past the step after the highest one any
   worker has pushed to it (a worker may already be computing that one), and answers that step.
2. :meth:`HandOff.stop_after` the largest answer: every worker finishes up to that step on every
   shard (it can, since no shard holds it below), and each shard stops, capturing its state,
   once all of them have pushed it. No push past it can arrive: no pull past it was answered.

Without a sync part (async, SSP) every push is a whole update: the shard stops at once and
captures its state then.
"""

from __future__ import annotations

from typing import Any


class HandOff:
    """A shard's hand-back: the pull limit, the step to stop after and the state captured."""

    def __init__(self) -> None:
        self.limit: int | None = None  # no pull at this clock or later
        self.stop_step: int | None = None  # stop once every worker pushed this step
        self.state: dict[str, Any] | None = None  # {"version", "state"} where it stopped

    def allows(self, clock: int) -> bool:
        """Whether a worker at ``clock`` may pull (compute step ``clock + 1``)."""
        return self.limit is None or clock < self.limit

    def hold(self, step: int) -> int:
        """Let workers compute up to ``step``, no further; returns it."""
        self.limit = step
        return step

    def stop_after(self, step: int) -> None:
        self.limit = self.stop_step = step

    def reached(self, clocks: list[int]) -> bool:
        """Whether every worker (``clocks``: the last step each pushed) has pushed the stop
        step."""
        return self.stop_step is not None and self.state is None and min(clocks) >= self.stop_step
