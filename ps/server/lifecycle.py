"""A table's row lifecycle on one shard: admission, a row budget with eviction, and expiry.

The keys (``model.embedding`` or ``SparseEmbedding(...)``; :class:`ps.protocol.messages.
TableConfig`):

- ``admit_after: N`` — an id gets a row only once it has been *seen* N times: seen = one update
  of the table that carries a gradient for it (a sync step, or an async push). Until then it
  reads as its initial value and its gradient is dropped. The counts live in a count-min sketch
  (2 × 2^20 saturating 16-bit counters, 4 MiB per table and shard, not a row per id); it may
  over-count (admit an id a little early), never under-count.
- ``max_rows`` with ``evict: lru | lfu`` — the table's rows across shards; each shard keeps at
  most ``max_rows // shards`` (ids hash evenly). When an update takes a shard beyond its share,
  it drops rows (and their optimizer state) down to 90% of it: the least recently updated
  (``lru``) or the least often updated, the least recent among equals (``lfu``).
- ``expire_after_steps: E`` — a row not updated for E of the table's updates is dropped; the
  shard sweeps every ``ceil(E / 8)`` updates, so a row goes between E and E + E/8 after its last
  update.

A dropped row that comes back starts again from its initial value, as a new id. The table's
clock (its number of updates), every row's last update, the sketch and the counters are part of
the checkpoint, so a restored table drops exactly the rows the fault-free one drops.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ps.hashing import mix64
from ps.protocol.messages import TableConfig

SKETCH_DEPTH = 2
SKETCH_WIDTH = 1 << 20
SKETCH_MAX = np.iinfo(np.uint16).max
EVICT_TO = 0.9  # of the budget: an eviction makes room for more than one update's new rows
_SALTS = tuple(np.uint64(s) for s in (0x51ED270B27E5A3C1, 0x2545F4914F6CDD1D))


class FrequencySketch:
    """Count-min counts of ids (``SKETCH_DEPTH`` × ``SKETCH_WIDTH`` saturating uint16)."""

    def __init__(self) -> None:
        self.counts = np.zeros((SKETCH_DEPTH, SKETCH_WIDTH), dtype=np.uint16)

    def _cells(self, keys: np.ndarray) -> list[np.ndarray]:
        mask = np.uint64(SKETCH_WIDTH - 1)
        return [(mix64(keys.view(np.uint64) ^ salt) & mask).astype(np.int64) for salt in _SALTS]

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Count one sighting of each of ``keys`` (distinct); returns their estimated counts."""
        estimate = np.full(len(keys), SKETCH_MAX, dtype=np.int64)
        for row, cells in zip(self.counts, self._cells(keys), strict=True):
            # Distinct keys may share a cell: each adds one, capped at the maximum.
            cell, times = np.unique(cells, return_counts=True)
            row[cell] = np.minimum(row[cell].astype(np.int64) + times, SKETCH_MAX)
            estimate = np.minimum(estimate, row[cells])
        return estimate


class Lifecycle:
    """Admission, budget and expiry of one table on one shard (see the module docstring).

    Args:
        config: the table.
        shards: how many shards share the table (the budget is split evenly).
    """

    def __init__(self, config: TableConfig, shards: int) -> None:
        self.config = config
        self.budget = max(1, config.max_rows // max(1, shards)) if config.max_rows else None
        self.sweep_every = (
            math.ceil(config.expire_after_steps / 8) if config.expire_after_steps else None
        )
        self.sketch = FrequencySketch() if config.admit_after > 1 else None
        self.clock = 0  # the table's updates on this shard
        self.last = np.zeros(0, dtype=np.int64)  # by slot: the clock of the row's last update
        self.counts = {"rows_admitted": 0, "rows_evicted": 0, "rows_expired": 0}

    @property
    def nbytes(self) -> int:
        return self.last.nbytes + (self.sketch.counts.nbytes if self.sketch is not None else 0)

    def admit(self, keys: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Which of an update's ``keys`` (distinct) may be written: the rows that exist and the
        new ids seen ``admit_after`` times by now (this update included)."""
        if self.sketch is None:
            return np.ones(len(keys), dtype=bool)
        allowed = present.copy()
        absent = ~present
        if absent.any():
            allowed[absent] = self.sketch.add(keys[absent]) >= self.config.admit_after
        return allowed

    def tick(self) -> None:
        """The table takes an update (whether or not it carries rows of this shard)."""
        self.clock += 1

    def touched(self, slots: np.ndarray, rows: int) -> None:
        """This update wrote ``slots``; the table now has ``rows`` rows."""
        if len(self.last) < rows:
            grown = np.zeros(max(rows, int(len(self.last) * 1.5)), dtype=np.int64)
            grown[: len(self.last)] = self.last
            self.last = grown
        self.last[slots] = self.clock

    def _sweep_due(self) -> bool:
        return bool(self.sweep_every) and self.clock % self.sweep_every == 0

    def due(self, rows: int) -> bool:
        """Whether this update may drop rows (a sweep is due, or the table is over budget)."""
        return self._sweep_due() or (self.budget is not None and rows > self.budget)

    def drop(self, steps: np.ndarray) -> np.ndarray | None:
        """The slots to drop after this update (``steps``: every row's update count, by slot),
        or None; counted as expired or evicted."""
        n = len(steps)
        last = self.last[:n]
        drop = np.zeros(n, dtype=bool)
        if self._sweep_due():
            drop = self.clock - last > self.config.expire_after_steps
            self.counts["rows_expired"] += int(drop.sum())
        if self.budget and n - int(drop.sum()) > self.budget:
            keep = int(self.budget * EVICT_TO) if self.budget > 1 else 1
            alive = np.flatnonzero(~drop)
            if self.config.evict == "lfu":
                order = np.lexsort((last[alive], steps[alive]))  # fewest updates, then oldest
            else:
                order = np.argsort(last[alive], kind="stable")  # least recently updated
            victims = alive[order[: len(alive) - keep]]
            drop[victims] = True
            self.counts["rows_evicted"] += len(victims)
        return np.flatnonzero(drop) if drop.any() else None

    def dropped(self, keep: np.ndarray) -> None:
        """The rows were compacted to ``keep`` (a mask by old slot)."""
        self.last = self.last[: len(keep)][keep]

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self, rows: int) -> dict[str, Any]:
        # Tensors, not numpy arrays: checkpoints are read with torch.load(weights_only=True).
        out: dict[str, Any] = {"clock": self.clock, "counts": dict(self.counts)}
        out["last"] = torch.from_numpy(self.last[:rows].copy())
        if self.sketch is not None:  # uint16 travels as its int16 bits
            out["sketch"] = torch.from_numpy(self.sketch.counts.view(np.int16).copy())
        return out

    def load_state_dict(self, saved: dict[str, Any] | None, rows: int) -> None:
        """Continue from :meth:`state_dict` output (None: a checkpoint from before lifecycles:
        every row last updated at clock 0)."""
        saved = saved or {}
        self.clock = int(saved.get("clock", 0))
        self.last = np.zeros(rows, dtype=np.int64)
        if "last" in saved:
            self.last[:] = np.asarray(saved["last"], dtype=np.int64)
        self.counts = {**self.counts, **saved.get("counts", {})}
        if self.sketch is not None and "sketch" in saved:
            self.sketch.counts[:] = np.asarray(saved["sketch"]).view(np.uint16)
