"""Streaming the training split of a file set: who reads which rows in which order, and the
worker-side feed that reads them a block at a time.

Everything is a pure function of the source, the seed, the epoch and the worker, as for data in
memory: a replaced worker, a restored job or a restarted service recomputes the same rows for
the same step, so every training row is used exactly once per epoch across failures (the
pushes of a replayed step are dropped by the shards' ``(worker, seq)`` dedupe).

- The **split**: a row is in the validation or test split by a hash of (file, row) — never by
  loading everything — unless ``data.validation_source`` / ``data.test_source`` give them.
- Each **epoch** orders the work items (a seeded permutation, or file order without shuffle)
  and gives every worker an equal share of the training rows: contiguous ranges of that order,
  as for data in memory (so every worker takes the same number of steps; ray#66085).
- Within its share a worker **shuffles** rows in windows of ``data.shuffle_buffer`` rows (a
  seeded permutation per window: a replayed step needs only its window, not the epoch so far).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass

import numpy as np

from ps.errors import SpecError
from ps.hashing import mix64, text_hash
from workers.data.batching import worker_rows
from workers.data.filesets import BLOCK_ROWS, FileSet, WorkItem, read_item

PREFETCH_CHUNKS = 2  # decoded blocks a worker's reader may hold ahead of training
TRAIN, VALIDATION, TEST = 0, 1, 2


@dataclass(frozen=True)
class Holdout:
    """The row-hash split: a row's unit number ``u`` in [0, 1) from (seed, file, row) puts it
    in the test split (``u < test``), the validation split (``u < test + validation``) or
    training."""

    seed: int
    validation: float
    test: float

    def units(self, item: WorkItem) -> np.ndarray:
        rows = np.arange(item.start, item.start + item.rows, dtype=np.uint64)
        salt = np.uint64(text_hash(f"holdout:{self.seed}"))
        keys = (np.uint64(item.file) << np.uint64(40)) | rows
        return (mix64(keys ^ salt) >> np.uint64(11)).astype(np.float64) / 2.0**53

    def marks(self, item: WorkItem) -> np.ndarray:
        """Per row of ``item``: TRAIN, VALIDATION or TEST."""
        if not self.validation and not self.test:
            return np.zeros(item.rows, np.uint8)
        u = self.units(item)
        marks = np.full(item.rows, TRAIN, np.uint8)
        marks[u < self.test + self.validation] = VALIDATION
        marks[u < self.test] = TEST
        return marks


@dataclass(frozen=True)
class StreamSource:
    """What a worker needs to stream its share (small: paths and per-item counts).

    Attributes:
        files: the file set.
        holdout: the row-hash split (no held-out rows where separate sources give them).
        train_rows: training rows of each work item.
        loss: the job's loss (how targets are encoded).
        classes: the class labels, sorted (empty for mse).
        shift / scale: the training statistics features are normalized with.
        buckets: the ids categorical columns are hashed into.
        seed / shuffle / shuffle_buffer: as in the spec.
        block_rows: rows a reader decodes at once (:func:`block_rows_for`).
    """

    files: FileSet
    holdout: Holdout
    train_rows: tuple[int, ...]
    loss: str
    classes: tuple
    shift: np.ndarray
    scale: np.ndarray
    buckets: int
    seed: int
    shuffle: bool
    shuffle_buffer: int
    block_rows: int = BLOCK_ROWS

    @property
    def n_train(self) -> int:
        return sum(self.train_rows)

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Raw targets as the loss takes them (as :func:`workers.data.base.targets` does)."""
        return encode_targets(y, self.loss, self.classes)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.shift) / self.scale).astype(np.float32)


def encode_targets(y: np.ndarray, loss: str, classes: tuple) -> np.ndarray:
    """Raw targets as float32 ``(n, targets)`` (mse), 0/1 float32 (bce) or int64 class indices.

    Raises:
        SpecError: a label that is not one of ``classes`` (it appeared after the scan).
    """
    if loss == "mse":
        return np.asarray(y, dtype=np.float32).reshape(len(y), -1)
    labels = np.asarray(classes)
    index = np.searchsorted(labels, y)
    known = (index < len(labels)) & (labels[np.minimum(index, len(labels) - 1)] == y)
    if not known.all():
        raise SpecError("data.target", f"label {y[~known][0]!r} was not in the data's scan")
    return index.astype(np.float32 if loss == "bce" else np.int64)


def block_rows_for(max_in_memory: int, row_bytes: int) -> int:
    """Rows per decoded block: a sixteenth of ``data.max_in_memory`` (so a worker's buffers
    stay well inside it), between 1,024 and :data:`BLOCK_ROWS`."""
    return int(np.clip(max_in_memory // (16 * max(1, row_bytes)), 1024, BLOCK_ROWS))


def stream_buffer_rows(spec, batch_size: int, block_rows: int | None = None) -> int:
    """At most how many decoded rows one worker's :class:`StreamFeed` holds: its buffer (the
    shuffle window, one block beyond it and a minibatch — twice while a block is joined to
    it), the blocks queued, and the one being decoded."""
    window = spec.shuffle_buffer if spec.shuffle else 0
    block_rows = block_rows or BLOCK_ROWS
    return 2 * (window + block_rows + batch_size) + (PREFETCH_CHUNKS + 1) * block_rows


def epoch_order(n_items: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order of the work items in ``epoch`` (the same for every worker)."""
    if not shuffle:
        return np.arange(n_items)
    return np.random.default_rng([seed, 0x5EED, epoch]).permutation(n_items)


def share_segments(
    source: StreamSource, epoch: int, worker: int, workers: int
) -> list[tuple[int, int, int]]:
    """Worker ``worker``'s share of ``epoch``: ``(item, lo, hi)`` ranges of training rows
    (counted within each item's training rows), in reading order."""
    counts = np.asarray(source.train_rows, dtype=np.int64)
    order = epoch_order(len(counts), source.seed, epoch, source.shuffle)
    ends = np.cumsum(counts[order])
    lo, hi = worker_rows(int(ends[-1]), workers)[worker]
    segments = []
    for k in range(int(np.searchsorted(ends, lo, side="right")), len(order)):
        start = int(ends[k] - counts[order[k]])
        if start >= hi:
            break
        a, b = max(lo, start) - start, min(hi, int(ends[k])) - start
        if b > a:
            segments.append((int(order[k]), a, b))
    return segments


def batch_bounds(size: int, batches: int) -> np.ndarray:
    """Where each minibatch of a ``size``-row share starts (and the last ends): the sizes of
    ``np.array_split``, as for data in memory."""
    small, extra = divmod(size, batches)
    sizes = [small + 1] * extra + [small] * (batches - extra)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


class StreamFeed:
    """A worker's minibatches, read from the files as it trains.

    Its :class:`~workers.data.assignment.Assignment` says which rows a step reads: a *share*
    (a list of item segments and its minibatch bounds) and the minibatch within it. A background
    thread reads and decodes the share's rows in order (at most :data:`PREFETCH_CHUNKS` blocks
    ahead: back-pressure); :meth:`batch` cuts them into minibatches, shuffled within windows of
    ``shuffle_buffer`` rows. The worker holds at most :func:`stream_buffer_rows` decoded rows.

    Args:
        source: what to read.
        assignment: which share and minibatch each step reads.
        block_rows: rows decoded at once (default: the source's).
    """

    def __init__(self, source: StreamSource, assignment, block_rows: int | None = None) -> None:
        self.source, self.assignment = source, assignment
        self.block_rows = block_rows or source.block_rows
        self.window = source.shuffle_buffer if source.shuffle else 0
        self._share = None
        self._next = -1
        self._reader: _Reader | None = None
        self._perms: dict[int, np.ndarray] = {}
        self.rows_read = 0

    def has(self, clock: int) -> bool:
        """Whether there is a minibatch for step ``clock`` (a ledger may have run out)."""
        return self.assignment.has(clock)

    def batch(self, clock: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(features, targets, ids) of the minibatch of step ``clock``."""
        share, b = self.assignment.locate(clock)
        if share is not self._share or b != self._next:
            self._open(share, b)
        s, t = int(share.bounds[b]), int(share.bounds[b + 1])
        rows = self._rows(s, t)
        self._next = b + 1
        return rows

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None

    def _open(self, share, b: int) -> None:
        self.close()
        self._share, self._perms, self._size = share, {}, int(share.bounds[-1])
        start = int(share.bounds[b])
        if self.window:
            start -= start % self.window
        self._buffer = _Buffer(start)
        self._reader = _Reader(self.source, share.segments, start, self.block_rows)

    def _rows(self, s: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        need = t if not self.window else min(self._size, ((t - 1) // self.window + 1) * self.window)
        while self._buffer.end < need:
            chunk = self._reader.next()
            self.rows_read += len(chunk[0])
            self._buffer.append(chunk)
        positions = np.arange(s, t, dtype=np.int64)
        if self.window and t > s:
            k = positions // self.window
            positions = k * self.window + np.concatenate(
                [self._perm(int(w))[positions[k == w] - w * self.window] for w in np.unique(k)]
            )
        rows = self._buffer.take(positions)
        self._buffer.drop_before(t - t % self.window if self.window else t)
        return rows

    def _perm(self, w: int) -> np.ndarray:
        if w not in self._perms:
            n = min(self.window, self._size - w * self.window)
            seed = [self.source.seed, *self._share.key, w]
            self._perms = {w: np.random.default_rng(seed).permutation(n)}
        return self._perms[w]


class _Buffer:
    """Decoded share rows from position ``start`` on, as the chunks the reader made (joined
    only where a minibatch spans two: each row is copied at most once more)."""

    def __init__(self, start: int) -> None:
        self.start = self.end = start
        self.parts: list[tuple] = []

    def append(self, chunk: tuple) -> None:
        self.parts.append(chunk)
        self.end += len(chunk[0])

    def take(self, positions: np.ndarray) -> tuple:
        """The rows at ``positions`` (views where they are consecutive)."""
        offsets = positions - self.start
        last = int(offsets.max()) if len(offsets) else 0
        covered, k = 0, 0
        while k < len(self.parts) and covered <= last:
            covered += len(self.parts[k][0])
            k += 1
        if k > 1:
            x, y, ids = zip(*self.parts[:k], strict=True)
            joined = (
                np.concatenate(x),
                np.concatenate(y),
                None if ids[0] is None else np.concatenate(ids),
            )
            self.parts[:k] = [joined]
        x, y, ids = self.parts[0]
        if len(offsets) and (np.diff(offsets) == 1).all():
            rows = slice(int(offsets[0]), last + 1)  # consecutive: no copy
        else:
            rows = offsets
        return x[rows], y[rows], None if ids is None else ids[rows]

    def drop_before(self, position: int) -> None:
        """Forget the rows before ``position`` (a view of a part's rest: no copy)."""
        cut = min(position, self.end) - self.start
        while self.parts and cut >= len(self.parts[0][0]):
            n = len(self.parts.pop(0)[0])
            cut -= n
            self.start += n
        if cut > 0:
            self.parts[0] = tuple(None if a is None else a[cut:] for a in self.parts[0])
            self.start += cut


class _Reader:
    """A thread that reads a share's training rows from position ``start`` on into a bounded
    queue of decoded, normalized chunks."""

    def __init__(self, source: StreamSource, segments: list, start: int, block_rows: int) -> None:
        self.queue: queue.Queue = queue.Queue(PREFETCH_CHUNKS)
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(source, segments, start, block_rows), daemon=True
        )
        self.thread.start()

    def next(self) -> tuple:
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is None:
            raise RuntimeError("the stream ended before the epoch's share")
        return item

    def stop(self) -> None:
        self.stopped.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.queue.get(timeout=0.05)

    def _put(self, item) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: StreamSource, segments: list, start: int, block_rows: int) -> None:
        try:
            position = 0
            for item_index, lo, hi in segments:
                length = hi - lo
                if position + length <= start:
                    position += length
                    continue
                first = lo + max(0, start - position)
                for chunk in _segment(source, item_index, first, hi, block_rows):
                    if not self._put(chunk):
                        return
                position += length
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            self._put(exc)


def _segment(source: StreamSource, item_index: int, lo: int, hi: int, block_rows: int):
    """Training rows ``[lo, hi)`` of one item (counted among its training rows), decoded."""
    item = source.files.items[item_index]
    train = np.flatnonzero(source.holdout.marks(item) == TRAIN)
    if hi <= lo:
        return
    first_raw, last_raw = int(train[lo]), int(train[hi - 1])
    wanted = np.zeros(item.rows, bool)
    wanted[train[lo:hi]] = True
    for block in read_item(source.files, item, source.buckets, first_raw, block_rows):
        n = len(block.x)
        keep = wanted[block.offset : block.offset + n]
        if keep.any():
            ids = None if block.ids is None else block.ids[keep]
            yield source.normalize(block.x[keep]), source.encode(block.y[keep]), ids
        if block.offset + n > last_raw:
            return
