"""One shard's part of an embedding table: rows by key, created on first touch.

The configured size of a table (``num_rows``, or ``model.embedding.buckets``) bounds the ids; it
is not an allocation. A shard keeps only the rows pushed to it so far: their keys, values, the
per-row optimizer state (:mod:`ps.optim.rows`) and update counts, in arrays that grow with the
rows touched, found through an open-addressing hash index (numpy, vectorized: no Python loop per
key). Reads never create rows: an id never trained reads as its initial value while training
(:func:`ps.hashing.initial_rows`, the value its first update starts from) and as zeros in
evaluation and exports (no information learned about it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ps.hashing import mix64
from ps.optim.rows import RowRule
from ps.protocol.messages import TableConfig
from ps.protocol.rows import sum_rows

EMPTY = -1
MIN_CAPACITY = 1024
GROWTH = 1.5
MAX_LOAD = 0.5  # of the hash index: probes stay short


class KeyIndex:
    """Keys (non-negative int64) to slots 0, 1, 2, … in insertion order."""

    def __init__(self) -> None:
        self.keys = np.empty(MIN_CAPACITY, dtype=np.int64)  # by slot
        self.n = 0
        self.slots = np.full(2 * MIN_CAPACITY, EMPTY, dtype=np.int32)  # by hash bucket

    def _home(self, keys: np.ndarray) -> np.ndarray:
        mask = np.uint64(len(self.slots) - 1)
        return (mix64(keys.view(np.uint64)) & mask).astype(np.int64)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key, or -1 where absent."""
        found = np.full(len(keys), EMPTY, dtype=np.int64)
        pos, todo, mask = self._home(keys), np.arange(len(keys)), len(self.slots) - 1
        while todo.size:
            slot = self.slots[pos[todo]]
            occupied = slot != EMPTY
            hit = occupied & (self.keys[np.where(occupied, slot, 0)] == keys[todo])
            found[todo[hit]] = slot[hit]
            todo = todo[occupied & ~hit]
            pos[todo] = (pos[todo] + 1) & mask
        return found

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Give new slots to ``keys`` (distinct, all absent); returns them."""
        k = len(keys)
        if self.n + k > len(self.keys):
            grown = np.empty(max(self.n + k, int(len(self.keys) * GROWTH)), dtype=np.int64)
            grown[: self.n] = self.keys[: self.n]
            self.keys = grown
        new = np.arange(self.n, self.n + k, dtype=np.int64)
        self.keys[self.n : self.n + k] = keys
        self.n += k
        if self.n > MAX_LOAD * len(self.slots):
            size = len(self.slots)
            while self.n > MAX_LOAD * size:
                size *= 2
            self.slots = np.full(size, EMPTY, dtype=np.int32)
            self._place(np.arange(self.n, dtype=np.int64))
        else:
            self._place(new)
        return new

    def _place(self, slots: np.ndarray) -> None:
        pos, todo, mask = self._home(self.keys[slots]), np.arange(len(slots)), len(self.slots) - 1
        while todo.size:
            free = self.slots[pos[todo]] == EMPTY
            claim = todo[free]
            self.slots[pos[claim]] = slots[claim]  # several may claim one bucket: one wins
            won = self.slots[pos[todo]] == slots[todo]
            todo = todo[~won]
            pos[todo] = (pos[todo] + 1) & mask

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.slots.nbytes


class SparseTable:
    """A shard's rows of one table, their optimizer state, and (sync) this step's gradients.

    Args:
        config: the table.
        rule: the per-row update rule.
        seed: the job's seed (initial values).
    """

    def __init__(self, config: TableConfig, rule: RowRule, seed: int) -> None:
        self.config, self.rule, self.seed = config, rule, seed
        self.index = KeyIndex()
        width = config.width
        self.values = np.empty((MIN_CAPACITY, width), dtype=np.float32)
        self.state = {s: np.empty((MIN_CAPACITY, width), dtype=np.float32) for s in rule.state}
        self.steps = np.zeros(MIN_CAPACITY, dtype=np.int32)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._before: tuple[np.ndarray, np.ndarray] | None = None  # sorted keys, their old rows

    def __len__(self) -> int:
        return self.index.n

    @property
    def nbytes(self) -> int:
        rows = self.values.nbytes + sum(s.nbytes for s in self.state.values())
        return rows + self.steps.nbytes + self.index.nbytes

    # -- reads --------------------------------------------------------------------------------
    def lookup(self, keys: np.ndarray, missing: str = "init", before_step: bool = False):
        """The rows of ``keys`` (a copy, ``(k, width)``); ids never trained read as their
        initial value (``missing="init"``) or zeros. ``before_step``: as they were before the
        last sync step (a replayed step, see :meth:`finish_step`)."""
        keys = np.asarray(keys, dtype=np.int64)
        slots = self.index.find(keys)
        have = slots >= 0
        out = self.values[np.where(have, slots, 0)]
        if not have.all():
            absent = ~have
            if missing == "init":
                out[absent] = self.config.initial(self.seed, keys[absent])
            else:
                out[absent] = 0.0
        if before_step and self._before is not None:
            old_keys, old_rows = self._before
            at = np.searchsorted(old_keys, keys).clip(max=max(len(old_keys) - 1, 0))
            hit = old_keys[at] == keys if len(old_keys) else np.zeros(len(keys), bool)
            out[hit] = old_rows[at[hit]]
        return out

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row this shard has: (keys sorted, rows)."""
        n = self.index.n
        order = np.argsort(self.index.keys[:n], kind="stable")
        return self.index.keys[:n][order], self.values[:n][order]

    # -- writes -------------------------------------------------------------------------------
    def apply(self, keys: np.ndarray, grads: np.ndarray) -> None:
        """One update of the rows ``keys`` (distinct) with ``grads`` (``(k, width)``); absent
        rows are created with their initial value first."""
        keys = np.asarray(keys, dtype=np.int64)
        if not len(keys):
            return
        slots = self._slots(keys)
        self.steps[slots] += 1
        w = torch.from_numpy(self.values[slots])
        state = {s: torch.from_numpy(a[slots]) for s, a in self.state.items()}
        steps = torch.from_numpy(self.steps[slots].astype(np.float32)[:, None])
        self.rule.apply(w, torch.from_numpy(np.array(grads, dtype=np.float32)), state, steps)
        self.values[slots] = w.numpy()
        for s, a in self.state.items():
            a[slots] = state[s].numpy()

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        slots = self.index.find(keys)
        absent = slots < 0
        if absent.any():
            new_keys = keys[absent]
            new = self.index.add(new_keys)
            self._reserve(self.index.n)
            self.values[new] = self.config.initial(self.seed, new_keys)
            for s, a in self.state.items():
                a[new] = self.rule.initial(s)
            self.steps[new] = 0
            slots[absent] = new
        return slots

    def _reserve(self, n: int) -> None:
        if n <= len(self.values):
            return
        size = max(n, int(len(self.values) * GROWTH))
        self.values = _grown(self.values, size)
        self.state = {s: _grown(a, size) for s, a in self.state.items()}
        self.steps = _grown(self.steps, size)

    def accumulate(self, keys: np.ndarray, grads: np.ndarray) -> None:
        """Keep one worker's row gradients for this sync step (see :meth:`finish_step`)."""
        if len(keys):
            self._pending.append((np.asarray(keys, np.int64), np.array(grads, np.float32)))

    def finish_step(self, workers: int, keep_before: bool = False) -> None:
        """End a sync step: the sum of the step's row gradients over ``workers`` (a row one
        worker did not touch counts as zero there, as in the dense average), applied once.

        ``keep_before``: remember the rows as they were, for a replacement worker replaying
        this step against shards that already finished it (:meth:`lookup`).
        """
        pending, self._pending = self._pending, []
        keys, grads = sum_rows(pending, self.config.width)
        if keep_before:
            self._before = (keys, self.lookup(keys))
        if len(keys):
            self.apply(keys, grads / max(1, workers))

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every row, its state and update count, and gradients waiting for a sync step
        (copies)."""
        n = self.index.n
        keys, grads = sum_rows(self._pending, self.config.width)
        return {
            "keys": torch.from_numpy(self.index.keys[:n].copy()),
            "values": torch.from_numpy(self.values[:n].copy()),
            "state": {s: torch.from_numpy(a[:n].copy()) for s, a in self.state.items()},
            "steps": torch.from_numpy(self.steps[:n].copy()),
            "pending_keys": torch.from_numpy(keys),
            "pending_grads": torch.from_numpy(grads),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` output.

        Raises:
            ValueError: rows of another width, or another rule's state.
        """
        values = np.asarray(saved["values"], dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != self.config.width:
            raise ValueError(
                f"table {self.config.name}: checkpoint rows are {values.shape}, not (n, "
                f"{self.config.width})"
            )
        if set(saved["state"]) != set(self.state):
            raise ValueError(
                f"table {self.config.name}: checkpoint holds optimizer state "
                f"{sorted(saved['state'])}, this rule keeps {sorted(self.state)}"
            )
        keys = np.asarray(saved["keys"], dtype=np.int64)
        self.index = KeyIndex()
        self.index.add(keys)
        self.values = np.empty((0, self.config.width), np.float32)
        self.state = {s: np.empty((0, self.config.width), np.float32) for s in self.state}
        self.steps = np.zeros(0, np.int32)
        self._reserve(max(len(keys), MIN_CAPACITY))
        self.values[: len(keys)] = values
        for s, a in self.state.items():
            a[: len(keys)] = np.asarray(saved["state"][s], dtype=np.float32)
        self.steps[: len(keys)] = np.asarray(saved["steps"], dtype=np.int32)
        pending = np.asarray(saved["pending_keys"], dtype=np.int64)
        grads = np.asarray(saved["pending_grads"], dtype=np.float32)
        self._pending = [(pending, grads)] if len(pending) else []
        self._before = None


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out
