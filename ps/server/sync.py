"""A shard's sync step: the bookkeeping its dense slice and its embedding tables share.

In sync mode a step's gradients are kept until every worker has pushed that step (the gate's
slowest clock passes it), then averaged over the pushes accepted and applied once. With several
shards a worker replaced mid-push replays a step that some shards already finished and others
did not; the finished ones answer its pull with the state from before that step, so the
replayed gradient is the original one (and then drop the replayed push as a duplicate).

:class:`SyncStep` counts the accepted pushes of the step under way, says when the step is due and
whether a read must see the state from before the latest step. What is accumulated and how it
is applied is each part's own (:mod:`ps.server.dense`, :mod:`ps.server.tables`).
"""

from __future__ import annotations

from ps.server.gate import ClockGate


class SyncStep:
    """One shard's sync steps.

    Args:
        gate: the shard's gate (its slowest clock ends steps).
        keep_before: the parts keep their state from before each step (several shards: a
            replayed step must read it).
    """

    def __init__(self, gate: ClockGate, keep_before: bool) -> None:
        self.gate = gate
        self.keep_before = keep_before
        self.steps = 0  # sync steps finished
        self.accepted = 0  # pushes counted in the step under way

    def take(self, accepted: bool) -> None:
        """One worker's push of the step under way (rejected ones count as absent)."""
        if accepted:
            self.accepted += 1

    @property
    def due(self) -> bool:
        """Whether every worker has pushed the step under way."""
        return self.gate.min_clock > self.steps

    def finish(self) -> int:
        """End the step under way; returns how many pushes it averages."""
        count, self.accepted = self.accepted, 0
        self.steps += 1
        return count

    def reads_before(self, clock: int, what: str) -> bool:
        """Whether a worker at ``clock`` must read the state from before the latest step.

        Raises:
            RuntimeError: it is further behind than one step (or no earlier state is kept).
        """
        if self.steps <= clock:
            return False
        if not self.keep_before or self.steps != clock + 1:
            raise RuntimeError(
                f"a worker at step {clock} asked for {what} this shard left behind at step "
                f"{self.steps}"
            )
        return True

    def state_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted}

    def load_state_dict(self, saved: dict[str, int]) -> None:
        """Continue after the gate's clocks were restored."""
        self.steps = self.gate.min_clock
        self.accepted = int(saved.get("accepted", 0))
