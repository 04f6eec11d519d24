"""Each worker's rows of the training split and the order of its minibatches."""

from __future__ import annotations

import numpy as np


def worker_rows(n: int, workers: int) -> list[tuple[int, int]]:
    """Each worker's rows: contiguous, disjoint, equal-as-possible [lo, hi) ranges."""
    cuts = np.linspace(0, n, workers + 1).round().astype(int)
    return [(int(cuts[i]), int(cuts[i + 1])) for i in range(workers)]


def batches_per_epoch(n: int, workers: int, batch_size: int) -> int:
    """Steps per epoch, the same for every worker: its largest shard in batches of batch_size."""
    largest = max(hi - lo for lo, hi in worker_rows(n, workers))
    return max(1, -(-largest // batch_size))


def epoch_batches(
    size: int, batches: int, seed: int, worker: int, epoch: int, shuffle: bool
) -> list[np.ndarray]:
    """The shard-local indices of each minibatch of one epoch.

    Every sample is visited once per epoch, in ``batches`` nearly equal batches; the order is
    a permutation seeded by (seed, worker, epoch), or the shard's order without shuffle.
    """
    order = (
        np.random.default_rng([seed, worker, epoch]).permutation(size)
        if shuffle
        else np.arange(size)
    )
    return np.array_split(order, batches)
