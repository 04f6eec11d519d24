"""A shard's embedding tables: its rows of every table.

The tables follow their own bound (``training.sparse_staleness``, default: the dense part's):

- **sync** (bound 0): a step's row gradients are kept until every worker has pushed that step,
  then summed and divided by the number of accepted pushes (a row a worker did not touch counts
  as zero there — exactly the dense average), and applied once;
- **bounded / async**: each worker's rows are applied on arrival, and a pull waits until the
  slowest worker is within the bound.

Rows are read and pushed by key; a pull never creates a row. The shard's dense slice and these
tables see the same pushes (every push carries the worker's step): they share the shard's one
gate and one sync step (:mod:`ps.server.sync`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ps.optim.config import SparseOptimizerConfig
from ps.optim.rows import build_row_rule
from ps.protocol.messages import RowsPush, RowsRequest, TableConfig
from ps.server.gate import ClockGate, bound_of
from ps.server.sparse import SparseTable
from ps.server.sync import SyncStep

LIFECYCLE_COUNTS = ("rows_admitted", "rows_evicted", "rows_expired")
_NO_KEYS = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class TablesConfig:
    """The tables part of a shard's configuration.

    Attributes:
        tables: every table of the model (a shard keeps the rows that hash to it).
        optimizer: the resolved ``sparse_optimizer`` section.
        mode / staleness: the tables' consistency (see the module docstring).
        seed: the job's seed (initial rows).
        snapshot_tables: evaluation snapshots hold whole tables (to export the best step),
            else only the rows of the evaluation keys.
        shards: how many shards share the tables.
    """

    tables: tuple[TableConfig, ...] = ()
    optimizer: SparseOptimizerConfig | None = None  # None: the default rule
    mode: str = "async"
    staleness: int = 0
    seed: int = 0
    snapshot_tables: bool = False
    shards: int = 1  # that share each table (row budgets are split evenly)


class ShardTables:
    """A shard's rows of every table.

    Args:
        config: see :class:`TablesConfig`.
        gate / step: the shard's gate and sync step (``step`` None: no part is sync).
        eval_keys: per table, the keys of this shard that evaluation reads.
    """

    def __init__(
        self,
        config: TablesConfig,
        gate: ClockGate,
        step: SyncStep | None,
        eval_keys: dict[int, np.ndarray] | None = None,
    ) -> None:
        self.config = config
        rule = build_row_rule(config.optimizer) if config.tables else None
        self.tables = [
            SparseTable(t, rule, config.seed, shards=config.shards) for t in config.tables
        ]
        self.sync = config.mode == "sync"
        self.gate, self.bound = gate, bound_of(config.mode, config.staleness)
        self.step = step if self.sync else None
        self.eval_keys = eval_keys or {}
        self.counts = {"rows_pushed": 0, "rows_pulled": 0, "sparse_bytes_pushed": 0}
        self.counts["sparse_bytes_pulled"] = 0

    def __bool__(self) -> bool:
        return bool(self.tables)

    # -- reads --------------------------------------------------------------------------------
    def may_pull(self, clock: int) -> bool:
        return not self.tables or self.gate.may_pull(clock, self.bound)

    def read(self, clock: int, requests: list[RowsRequest]) -> list[np.ndarray]:
        """The rows a worker at ``clock`` computes with (ids never trained: initial values).

        Raises:
            ValueError: an unknown table or ids outside it (a broken request).
        """
        before = self.step is not None and self.step.reads_before(clock, "rows")
        out = []
        for table, keys in requests:
            self._check_keys(table, keys)
            values = self.tables[table].lookup(keys, "init", before_step=before)
            self.counts["rows_pulled"] += len(keys)
            self.counts["sparse_bytes_pulled"] += keys.nbytes + values.nbytes
            out.append(values)
        return out

    def _check_keys(self, table: int, keys: np.ndarray) -> None:
        if not 0 <= table < len(self.tables):
            raise ValueError(f"no table {table} (the model has {len(self.tables)})")
        if keys.ndim != 1 or keys.dtype != np.int64:
            raise ValueError(f"row keys must be a 1-D int64 array, got {keys.dtype} {keys.shape}")
        rows = self.config.tables[table].num_rows
        if len(keys) and (keys.min() < 0 or keys.max() >= rows):
            raise ValueError(f"ids outside table {table} of {rows} rows")

    def items(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every table's rows on this shard: (keys sorted, rows)."""
        return [t.items() for t in self.tables]

    # -- writes -------------------------------------------------------------------------------
    def check(self, rows: list[RowsPush]) -> bool:
        """Whether a push's rows are finite.

        Raises:
            ValueError: malformed rows (unknown table, keys not sorted and distinct, wrong
                shape).
        """
        finite = True
        for table, keys, grads in rows:
            self._check_keys(table, keys)
            width = self.config.tables[table].width
            if grads.shape != (len(keys), width):
                raise ValueError(
                    f"table {table}: gradient rows {grads.shape}, not ({len(keys)}, {width})"
                )
            if len(keys) > 1 and not (np.diff(keys) > 0).all():
                raise ValueError(f"table {table}: row keys must be sorted and distinct")
            finite = finite and bool(np.isfinite(grads).all())
        return finite

    def take(self, rows: list[RowsPush], accepted: bool) -> None:
        """One worker's push: its rows (sync: kept for the step; else applied now)."""
        if not accepted:
            return
        untouched = set(range(len(self.tables)))
        for table, keys, grads in rows:
            self.counts["rows_pushed"] += len(keys)
            self.counts["sparse_bytes_pushed"] += keys.nbytes + grads.nbytes
            if self.sync:
                self.tables[table].accumulate(keys, grads)
            else:
                self.tables[table].apply(keys, grads)
                untouched.discard(table)
        if not self.sync:  # every table takes the update (its clock: rows' ages, expiry)
            for table in untouched:
                self.tables[table].apply(_NO_KEYS, np.empty((0, self.config.tables[table].width)))

    def finish_step(self, count: int) -> None:
        """End a sync step over ``count`` accepted pushes (each table applies its sum once)."""
        if self.step is None:
            return
        for t in self.tables:
            t.finish_step(count, keep_before=self.step.keep_before)

    # -- snapshots and checkpoints --------------------------------------------------------------
    def capture(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """What an evaluation snapshot keeps: whole tables, or the evaluation keys' rows
        (zeros for ids never trained)."""
        if self.config.snapshot_tables:
            return self.items()
        empty = np.empty(0, np.int64)
        return [
            (keys := self.eval_keys.get(i, empty), t.lookup(keys, "zeros"))
            for i, t in enumerate(self.tables)
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"tables": [t.state_dict() for t in self.tables]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` output.

        Raises:
            ValueError: another number of tables, or tables that do not match.
        """
        tables = saved.get("tables", [])
        if len(tables) != len(self.tables):
            raise ValueError(f"checkpoint has {len(tables)} tables, the model {len(self.tables)}")
        for table, state in zip(self.tables, tables, strict=True):
            table.load_state_dict(state)

    def stats(self) -> dict[str, int]:
        return {
            "table_rows": sum(len(t) for t in self.tables),
            "table_bytes": sum(t.nbytes for t in self.tables),
            **self.counts,
            **{k: sum(t.life.counts[k] for t in self.tables) for k in LIFECYCLE_COUNTS},
        }
