"""A step's row plan: the batch's ids of each embedding table, de-duplicated and routed once.

For every table the model says it will read (its ``row_ids`` hook), the plan holds the distinct
ids (sorted), where each of the batch's ids sits among them, and which shard keeps each row. The
same plan serves the step's three uses of the ids: the pull (each shard is asked for its rows),
the lookup in the forward pass (rows are gathered by the positions, no second ``unique``), and
the push (each shard gets its rows' gradients, in the same order). Before it, the ids were
de-duplicated twice and routed three times per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ps.hashing import shard_of
from ps.protocol.messages import RowsPush, RowsRequest


@dataclass(frozen=True)
class TableRows:
    """One table's rows of a step.

    Attributes:
        table: the table's number.
        ids: the batch's ids as the model will look them up (any shape).
        keys: the distinct ids, sorted (int64).
        inverse: for each of ``ids``, its position in ``keys`` (``ids``' shape, on its device).
        owners: per shard, the positions in ``keys`` of the rows it keeps (None: one shard).
    """

    table: int
    ids: Tensor
    keys: np.ndarray
    inverse: Tensor
    owners: tuple[np.ndarray, ...] | None

    @classmethod
    def of(cls, table: int, ids: Tensor, shards: int) -> TableRows:
        keys, inverse = np.unique(ids.detach().cpu().numpy().reshape(-1), return_inverse=True)
        inverse = torch.from_numpy(inverse.reshape(ids.shape)).to(ids.device)
        return cls(table, ids, keys, inverse, route(table, keys, shards))

    def matches(self, ids: Tensor) -> bool:
        """Whether ``ids`` are the ids this plan was made for."""
        if ids is self.ids:
            return True
        return ids.shape == self.ids.shape and bool(torch.equal(ids, self.ids))

    def part(self, shard: int, values: np.ndarray) -> np.ndarray:
        """The entries of ``values`` (aligned with ``keys``) that ``shard`` keeps."""
        return values if self.owners is None else values[self.owners[shard]]

    def has(self, shard: int) -> bool:
        return self.owners is None or self.owners[shard].size > 0


def route(table: int, keys: np.ndarray, shards: int) -> tuple[np.ndarray, ...] | None:
    """Per shard, the positions in ``keys`` of the rows it keeps (None: there is one shard)."""
    if shards == 1:
        return None
    owner = shard_of(table, keys, shards)
    return tuple(np.flatnonzero(owner == i) for i in range(shards))


@dataclass(frozen=True)
class RowPlan:
    """Every planned table of one step (see the module docstring)."""

    tables: tuple[TableRows, ...] = ()

    @classmethod
    def of(cls, requests: list[tuple[int, Tensor]], shards: int) -> RowPlan:
        """The plan for ``(table, ids)`` pairs (a model's ``row_ids`` of a batch)."""
        return cls(tuple(TableRows.of(table, ids, shards) for table, ids in requests))

    def get(self, table: int) -> TableRows | None:
        return next((t for t in self.tables if t.table == table), None)

    def requests(self, shard: int) -> list[RowsRequest]:
        """The rows to ask ``shard`` for."""
        return [RowsRequest(t.table, t.part(shard, t.keys)) for t in self.tables if t.has(shard)]

    def assemble(self, answers: list[list[np.ndarray]], widths: list[int]) -> dict:
        """table -> (keys, rows) from each shard's answers to :meth:`requests`."""
        answered = [iter(a) for a in answers]
        out = {}
        for t in self.tables:
            if t.owners is None:
                out[t.table] = (t.keys, next(answered[0]))
                continue
            values = np.empty((len(t.keys), widths[t.table]), np.float32)
            for i, at in enumerate(t.owners):
                if at.size:
                    values[at] = next(answered[i])
            out[t.table] = (t.keys, values)
        return out


@dataclass(frozen=True)
class RowGradients:
    """One table's gradient rows of a step, aligned with ``keys`` (sorted, distinct)."""

    table: int
    keys: np.ndarray
    grads: np.ndarray
    owners: tuple[np.ndarray, ...] | None

    def for_shard(self, shard: int) -> RowsPush | None:
        """The part ``shard`` keeps (None: no row of it)."""
        if self.owners is None:
            return RowsPush(self.table, self.keys, self.grads) if shard == 0 else None
        at = self.owners[shard]
        return RowsPush(self.table, self.keys[at], self.grads[at]) if at.size else None
