"""Which rows each step of a streaming worker reads: equal shares per epoch, or work items
handed out by the job's ledger.

A *share* is a run of item segments read in order and cut into minibatches; an assignment maps
a worker's clock to a share and a minibatch within it, the same way every time it is asked (a
replaced worker resumes at its clock and reads what its predecessor would have read).

- :class:`EqualShares` (sync and SSP): every epoch, each worker's equal share of the training
  rows (:func:`~workers.data.streams.share_segments`), in the same number of minibatches.
- :class:`LedgerShares` (async): the items the job's ledger gave this worker, one share each, in
  the order it was given them; when they are used up the worker asks the ledger for the next
  one, so a faster worker reads more (the tf.data service's ``distributed_epoch``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from workers.data.streams import StreamSource, batch_bounds, epoch_order, share_segments


@dataclass(frozen=True, eq=False)
class Share:
    """Item segments ``(item, lo, hi)`` read in order, and where its minibatches start (and
    the last ends); ``key`` seeds its shuffle windows."""

    key: tuple[int, ...]
    segments: list[tuple[int, int, int]]
    bounds: np.ndarray


def item_batches(rows: int, batch_size: int) -> int:
    """Minibatches of an item read alone: ``ceil(rows / batch_size)``."""
    return max(1, -(-rows // batch_size))


class EqualShares:
    """Epoch ``e``'s share of worker ``worker`` for the clocks ``[e × batches, (e+1) × batches)``."""

    def __init__(self, source: StreamSource, worker: int, workers: int, batches: int) -> None:
        self.source, self.worker, self.workers, self.batches = source, worker, workers, batches
        self._share: Share | None = None

    def has(self, clock: int) -> bool:
        return True  # the worker's step budget bounds the clock

    def locate(self, clock: int) -> tuple[Share, int]:
        epoch, b = divmod(clock, self.batches)
        key = (0, self.worker, epoch)
        if self._share is None or self._share.key != key:
            segments = share_segments(self.source, epoch, self.worker, self.workers)
            size = sum(hi - lo for _, lo, hi in segments)
            self._share = Share(key, segments, batch_bounds(size, self.batches))
        return self._share, b


class LedgerShares:
    """The items the ledger gave this worker, each read whole as one share.

    Args:
        source: the stream.
        batch_size: rows per minibatch (an item's last one may be smaller).
        given: the ledger's positions already given to this worker (a replacement continues
            them), in order.
        take: asks the ledger for the next position (None: the last epoch is handed out).
    """

    def __init__(
        self,
        source: StreamSource,
        batch_size: int,
        given: Sequence[int],
        take: Callable[[], int | None],
    ) -> None:
        self.source, self.batch_size, self.take = source, batch_size, take
        self.positions: list[int] = []
        self.starts = [0]
        self._orders: dict[int, np.ndarray] = {}
        self._share: Share | None = None
        for position in given:
            self._add(position)

    def item_at(self, position: int) -> int:
        """The work item at a ledger position (epoch-major: the epoch's item order)."""
        epoch, k = divmod(position, len(self.source.train_rows))
        if epoch not in self._orders:
            n = len(self.source.train_rows)
            self._orders = {epoch: epoch_order(n, self.source.seed, epoch, self.source.shuffle)}
        return int(self._orders[epoch][k])

    def _add(self, position: int) -> None:
        rows = self.source.train_rows[self.item_at(position)]
        self.positions.append(position)
        self.starts.append(self.starts[-1] + item_batches(rows, self.batch_size))

    def has(self, clock: int) -> bool:
        while clock >= self.starts[-1]:
            position = self.take()
            if position is None:
                return False
            self._add(position)
        return True

    def locate(self, clock: int) -> tuple[Share, int]:
        if not self.has(clock):
            raise IndexError(f"no work item for step {clock}: the ledger is spent")
        k = int(np.searchsorted(self.starts, clock, side="right")) - 1
        position = self.positions[k]
        if self._share is None or self._share.key != (1, position):
            item = self.item_at(position)
            rows = self.source.train_rows[item]
            bounds = batch_bounds(rows, item_batches(rows, self.batch_size))
            self._share = Share((1, position), [(item, 0, rows)], bounds)
        return self._share, clock - self.starts[k]
