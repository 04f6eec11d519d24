"""The failure policy of a job: what may fail how often (``training.max_failures`` each)."""

from __future__ import annotations

from collections import Counter

from ps.jobs.errors import FailureBudgetSpent


class FailureBudget:
    """Counts worker replacements (per worker) and shard restores, and refuses one too many.

    Args:
        max_failures: the spec's ``training.max_failures``.
    """

    def __init__(self, max_failures: int) -> None:
        self.max_failures = max_failures
        self.worker_failures: Counter[int] = Counter()
        self.restores = 0

    @property
    def worker_restarts(self) -> int:
        return sum(self.worker_failures.values())

    def worker_failed(self, worker: int, cause: str) -> int:
        """Record a dead worker; returns how often it failed.

        Raises:
            FailureBudgetSpent: it failed more than ``max_failures`` times.
        """
        self.worker_failures[worker] += 1
        failures = self.worker_failures[worker]
        if failures > self.max_failures:
            raise FailureBudgetSpent(
                f"worker {worker} failed {failures} times (training.max_failures="
                f"{self.max_failures}); last: {cause}"
            )
        return failures

    def shard_lost(self, cause: str) -> None:
        """Record a lost shard (every actor is restored from the last checkpoint).

        Raises:
            FailureBudgetSpent: shards were lost more than ``max_failures`` times.
        """
        self.restores += 1
        if self.restores > self.max_failures:
            raise FailureBudgetSpent(
                f"a parameter-server shard failed {self.restores} times (training.max_failures="
                f"{self.max_failures}); last: {cause}"
            )
