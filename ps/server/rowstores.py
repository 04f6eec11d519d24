"""Where a shard keeps one table's rows: key → row, the row, its optimizer state, its count.

Two stores with one interface, chosen by :func:`make_rows`:

- :class:`NativeRows` — the compiled store (``ps/server/native/rowstore.cpp``, built by
  ``pip install``): an index that keeps the key beside its slot (one cache miss per probe), each
  row and its state in one contiguous run, the rule fused into one pass per row, prefetching;
- :class:`NumpyRows` — the reference: a vectorized open-addressing :class:`KeyIndex` and one
  numpy array per buffer, updated through the torch rules of :mod:`ps.optim.rows`. The tests
  hold the compiled store to it (equal to float rounding: torch's kernels may fuse a multiply
  and an add where the compiled loop rounds twice).

Both keep rows in insertion order (slot 0, 1, 2, …) and never create a row on a read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import torch

from ps.hashing import mix64
from ps.optim.rows import RowRule

log = logging.getLogger(__name__)

EMPTY = -1
MIN_CAPACITY = 1024
GROWTH = 1.5
MAX_LOAD = 0.5  # of the hash index: probes stay short
STORE_ENV = "PS_ROW_STORE"  # "numpy": the reference store (for comparisons); default: compiled

Initial = Callable[[np.ndarray], np.ndarray]  # keys → their initial rows
Exported = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]


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


class NumpyRows:
    """The reference store: numpy arrays behind a :class:`KeyIndex`, torch rules."""

    def __init__(self, width: int, rule: RowRule) -> None:
        self.width, self.rule = width, rule
        self._empty(MIN_CAPACITY)

    def _empty(self, capacity: int) -> None:
        self.index = KeyIndex()
        self.values = np.empty((capacity, self.width), dtype=np.float32)
        self.state = {s: np.empty((capacity, self.width), np.float32) for s in self.rule.state}
        self.steps = np.zeros(capacity, dtype=np.int32)

    def __len__(self) -> int:
        return self.index.n

    @property
    def nbytes(self) -> int:
        rows = self.values.nbytes + sum(s.nbytes for s in self.state.values())
        return rows + self.steps.nbytes + self.index.nbytes

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of ``keys`` (a copy; zeros where absent) and which are present."""
        slots = self.index.find(keys)
        have = slots >= 0
        out = self.values[np.where(have, slots, 0)]
        out[~have] = 0.0
        return out, have

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Which of ``keys`` have a row."""
        return self.index.find(keys) >= 0

    def apply(self, keys: np.ndarray, grads: np.ndarray, initial: Initial) -> np.ndarray:
        """One update of rows ``keys`` (distinct); absent ones start at ``initial(keys)``.
        Returns the rows' slots."""
        slots = self.index.find(keys)
        absent = slots < 0
        if absent.any():
            new_keys = keys[absent]
            new = self.index.add(new_keys)
            self._reserve(self.index.n)
            self.values[new] = initial(new_keys)
            for s, a in self.state.items():
                a[new] = self.rule.initial(s)
            self.steps[new] = 0
            slots[absent] = new
        self.steps[slots] += 1
        w = torch.from_numpy(self.values[slots])
        state = {s: torch.from_numpy(a[slots]) for s, a in self.state.items()}
        steps = torch.from_numpy(self.steps[slots].astype(np.float32)[:, None])
        self.rule.apply(w, torch.from_numpy(np.array(grads, dtype=np.float32)), state, steps)
        self.values[slots] = w.numpy()
        for s, a in self.state.items():
            a[slots] = state[s].numpy()
        return slots

    def _reserve(self, n: int) -> None:
        if n <= len(self.values):
            return
        size = max(n, int(len(self.values) * GROWTH))
        self.values = _grown(self.values, size)
        self.state = {s: _grown(a, size) for s, a in self.state.items()}
        self.steps = _grown(self.steps, size)

    def all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every key and its row, in slot order (copies)."""
        n = self.index.n
        return self.index.keys[:n].copy(), self.values[:n].copy()

    def export(self) -> Exported:
        """(keys, values, state by name, update counts), in slot order (copies)."""
        n = self.index.n
        state = {s: a[:n].copy() for s, a in self.state.items()}
        return self.index.keys[:n].copy(), self.values[:n].copy(), state, self.steps[:n].copy()

    def load(self, keys, values, state, steps) -> None:
        """Replace every row with :meth:`export` output."""
        self._empty(max(len(keys), MIN_CAPACITY))
        self.index.add(keys)
        self.values[: len(keys)] = values
        for s, a in self.state.items():
            a[: len(keys)] = state[s]
        self.steps[: len(keys)] = steps


class NativeRows:
    """The compiled store (see the module docstring); the same interface as :class:`NumpyRows`."""

    def __init__(self, width: int, rule: RowRule) -> None:
        from ps.server._rowstore import RowStore

        self.width, self.rule = width, rule
        self.store = RowStore(width, rule.name, dict(rule.hp), rule.lr)

    def __len__(self) -> int:
        return len(self.store)

    @property
    def nbytes(self) -> int:
        return self.store.nbytes

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, slots = self.store.lookup(keys)
        return rows, slots >= 0

    def contains(self, keys: np.ndarray) -> np.ndarray:
        return self.store.find(keys) >= 0

    def apply(self, keys: np.ndarray, grads: np.ndarray, initial: Initial) -> np.ndarray:
        slots, created = self.store.prepare(keys)
        if len(created):
            self.store.write_values(slots[created], initial(keys[created]))
        self.store.update(slots, grads)
        return slots

    def all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        keys, values, _, _ = self.store.export_rows(with_state=False)
        return keys, values

    def export(self) -> Exported:
        keys, values, states, steps = self.store.export_rows()
        return keys, values, dict(zip(self.rule.state, states, strict=True)), steps

    def load(self, keys, values, state, steps) -> None:
        states = np.zeros((len(self.rule.state), len(keys), self.width), np.float32)
        for i, s in enumerate(self.rule.state):
            states[i] = state[s]
        self.store.load(keys, values, states, steps)


def native_available() -> bool:
    """Whether the compiled store was built (``pip install`` builds it)."""
    try:
        from ps.server import _rowstore  # noqa: F401
    except ImportError:
        return False
    return True


def make_rows(width: int, rule: RowRule) -> NativeRows | NumpyRows:
    """The compiled store, or the reference where ``PS_ROW_STORE=numpy`` (or, with a warning,
    where the compiled store was not built)."""
    if os.environ.get(STORE_ENV) == "numpy":
        return NumpyRows(width, rule)
    if not native_available():
        log.warning("the compiled row store is not built (pip install -e .): using numpy rows")
        return NumpyRows(width, rule)
    return NativeRows(width, rule)


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out
