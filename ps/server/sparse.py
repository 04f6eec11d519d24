"""One shard's part of an embedding table: rows by key, created on first touch.

The configured size of a table (``num_rows``, or ``model.embedding.buckets``) bounds the ids; it
is not an allocation. A shard keeps only the rows pushed to it so far: their keys, values, the
per-row optimizer state (:mod:`ps.optim.rows`) and update counts, in arrays that grow with the
rows touched, in a row store (:mod:`ps.server.rowstores`: compiled, with the numpy reference
beside it). Reads never create rows: an id never trained reads as its initial value while training
(:func:`ps.hashing.initial_rows`, the value its first update starts from) and as zeros in
evaluation and exports (no information learned about it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ps.optim.rows import RowRule
from ps.protocol.messages import TableConfig
from ps.protocol.rows import sum_rows
from ps.server.lifecycle import Lifecycle
from ps.server.rowstores import NativeRows, NumpyRows, make_rows


class SparseTable:
    """A shard's rows of one table, their optimizer state, and (sync) this step's gradients.

    Args:
        config: the table.
        rule: the per-row update rule.
        seed: the job's seed (initial values).
        rows: where the rows live (default: :func:`ps.server.rowstores.make_rows`).
        shards: how many shards share the table (its row budget is split evenly).
    """

    def __init__(
        self,
        config: TableConfig,
        rule: RowRule,
        seed: int,
        rows: NativeRows | NumpyRows | None = None,
        shards: int = 1,
    ) -> None:
        self.config, self.rule, self.seed = config, rule, seed
        self.rows = rows if rows is not None else make_rows(config.width, rule)
        self.life = Lifecycle(config, shards)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._before: tuple[np.ndarray, np.ndarray] | None = None  # sorted keys, their old rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.life.nbytes

    # -- reads --------------------------------------------------------------------------------
    def lookup(self, keys: np.ndarray, missing: str = "init", before_step: bool = False):
        """The rows of ``keys`` (a copy, ``(k, width)``); ids never trained read as their
        initial value (``missing="init"``) or zeros. ``before_step``: as they were before the
        last sync step (a replayed step, see :meth:`finish_step`)."""
        keys = np.asarray(keys, dtype=np.int64)
        out, have = self.rows.lookup(keys)
        if missing == "init" and not have.all():
            absent = ~have
            out[absent] = self.config.initial(self.seed, keys[absent])
        if before_step and self._before is not None:
            old_keys, old_rows = self._before
            at = np.searchsorted(old_keys, keys).clip(max=max(len(old_keys) - 1, 0))
            hit = old_keys[at] == keys if len(old_keys) else np.zeros(len(keys), bool)
            out[hit] = old_rows[at[hit]]
        return out

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row this shard has: (keys sorted, rows)."""
        keys, values = self.rows.all_rows()
        order = np.argsort(keys, kind="stable")
        return keys[order], values[order]

    # -- writes -------------------------------------------------------------------------------
    def apply(self, keys: np.ndarray, grads: np.ndarray) -> None:
        """One update of the table: the rows ``keys`` (distinct, possibly none) with ``grads``
        (``(k, width)``); absent rows are created with their initial value first — where
        admitted — and rows beyond the budget or expired are dropped after it
        (:mod:`ps.server.lifecycle`)."""
        keys = np.asarray(keys, dtype=np.int64)
        life = self.life
        life.tick()
        if len(keys):
            grads = np.ascontiguousarray(grads, dtype=np.float32)
            if life.sketch is not None:
                allowed = life.admit(keys, self.rows.contains(keys))
                keys, grads = keys[allowed], grads[allowed]
            before = len(self.rows)
            slots = self.rows.apply(keys, grads, lambda new: self.config.initial(self.seed, new))
            life.counts["rows_admitted"] += len(self.rows) - before
            life.touched(slots, len(self.rows))
        if life.due(len(self.rows)):
            self._drop()

    def _drop(self) -> None:
        keys, values, state, steps = self.rows.export()
        victims = self.life.drop(steps)
        if victims is None:
            return
        keep = np.ones(len(keys), dtype=bool)
        keep[victims] = False
        self.rows.load(
            keys[keep], values[keep], {s: a[keep] for s, a in state.items()}, steps[keep]
        )
        self.life.dropped(keep)

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
        keys, values, state, steps = self.rows.export()
        pending_keys, pending_grads = sum_rows(self._pending, self.config.width)
        return {
            "keys": torch.from_numpy(keys),
            "values": torch.from_numpy(values),
            "state": {s: torch.from_numpy(a) for s, a in state.items()},
            "steps": torch.from_numpy(steps),
            "pending_keys": torch.from_numpy(pending_keys),
            "pending_grads": torch.from_numpy(pending_grads),
            "lifecycle": self.life.state_dict(len(keys)),
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
        if set(saved["state"]) != set(self.rule.state):
            raise ValueError(
                f"table {self.config.name}: checkpoint holds optimizer state "
                f"{sorted(saved['state'])}, this rule keeps {sorted(self.rule.state)}"
            )
        state = {s: np.asarray(a, dtype=np.float32) for s, a in saved["state"].items()}
        keys = np.asarray(saved["keys"], dtype=np.int64)
        self.rows.load(keys, values, state, np.asarray(saved["steps"], dtype=np.int32))
        self.life.load_state_dict(saved.get("lifecycle"), len(keys))
        pending = np.asarray(saved["pending_keys"], dtype=np.int64)
        grads = np.asarray(saved["pending_grads"], dtype=np.float32)
        self._pending = [(pending, grads)] if len(pending) else []
        self._before = None
