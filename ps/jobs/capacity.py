"""The queue's one view of the cluster's resources: :class:`Capacity`.

What Ray reports in all, less what every job the scheduler has chosen holds. A job holds its
resources from the moment it is chosen (before its supervisor exists, let alone its actors) until
its end is recorded, so two jobs that do not fit together are never starting at once, whatever
Ray has placed so far. Only the scheduler reserves and releases, with its lock held.
"""

from __future__ import annotations

from collections.abc import Callable

import ray

from ps.jobs.errors import ClusterUnavailable

EPS = 1e-9


def cluster_total() -> dict[str, float]:
    """What the Ray cluster has in all (``CPU``, ``GPU``, ``memory``, custom resources).

    Raises:
        ClusterUnavailable: Ray cannot be reached.
    """
    try:
        return ray.cluster_resources()
    except Exception as exc:  # noqa: BLE001
        raise ClusterUnavailable(f"the Ray cluster is unreachable: {exc}") from None


class Capacity:
    """Reservations against the cluster's total.

    Args:
        total: returns the cluster's resources in all (:func:`cluster_total`; a test may pass
            a fixed one).
    """

    def __init__(self, total: Callable[[], dict[str, float]] = cluster_total) -> None:
        self._total = total
        self._held: dict[str, dict[str, float]] = {}

    def total(self) -> dict[str, float]:
        return dict(self._total())

    def free(self) -> dict[str, float]:
        """The total less every reservation (may be negative where re-attached jobs hold more
        than a shrunken cluster has)."""
        free = self.total()
        for need in self._held.values():
            for kind, amount in need.items():
                free[kind] = free.get(kind, 0.0) - amount
        return free

    def fits(self, need: dict[str, float]) -> bool:
        """Whether ``need`` fits in what is free now."""
        free = self.free()
        return all(amount <= free.get(kind, 0.0) + EPS for kind, amount in need.items())

    def reserve(self, job_id: str, need: dict[str, float]) -> None:
        self._held[job_id] = dict(need)

    def release(self, job_id: str) -> None:
        self._held.pop(job_id, None)
