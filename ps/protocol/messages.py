"""The messages of one step between a worker and a shard, typed.

Per step a worker sends a :class:`Push` (with its embedding-row gradients, :class:`RowsPush`)
and a :class:`PullRequest` (with the rows it will read, :class:`RowsRequest`); the shard answers
the push with a :class:`Status` and the pull with a :class:`PullReply`. The same types travel
over a channel (:mod:`ps.protocol.wire`) and through Ray calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

import numpy as np

from ps.hashing import initial_rows


class Status(str, Enum):
    """A shard's answer to a push."""

    APPLIED = "applied"  # the update ran
    ACCUMULATED = "accumulated"  # sync: kept until the step's other workers have pushed
    DUPLICATE = "duplicate"  # a (worker, seq) seen before: a replay after a replacement
    REJECTED = "rejected"  # non-finite: not applied, counted
    STOPPED = "stopped"  # the shard reached its last step or was stopped


STATUSES = tuple(Status)  # their order on the wire


@dataclass(frozen=True)
class Push:
    """The metadata of one gradient push (the gradient itself travels beside it).

    Attributes:
        worker: the pushing worker's index.
        seq: the worker's gradient number, 1-based (its clock after the push).
        base_version: the shard version its parameters were read at.
        base_min_clock: the slowest worker's clock when they were read (for staleness).
        grad_norm: the global L2 norm of the whole gradient (clipping across shards; a
            non-finite norm makes every shard reject the gradient alike).
    """

    worker: int
    seq: int
    base_version: int = 0
    base_min_clock: int = 0
    grad_norm: float | None = None


class RowsRequest(NamedTuple):
    """Rows of one table to read: ``keys`` int64, sorted and distinct."""

    table: int
    keys: np.ndarray


class RowsPush(NamedTuple):
    """Gradient rows of one table: ``keys`` sorted and distinct, ``grads`` ``(len(keys), width)``
    float32."""

    table: int
    keys: np.ndarray
    grads: np.ndarray


@dataclass(frozen=True)
class PullRequest:
    """The parameters for step ``clock`` and the embedding rows ``rows``."""

    clock: int
    rows: tuple[RowsRequest, ...] = ()


@dataclass
class PullReply:
    """A shard's answer to a pull.

    Attributes:
        stop: the shard stopped (nothing else is meaningful then).
        version / min_clock: the version read and the slowest worker's clock at the read.
        params / buffers: the shard's slice and the model's buffers it keeps (None where they
            went through shared memory, or when stopped).
        rows: one array per requested table, in request order.
    """

    stop: bool
    version: int
    min_clock: int = 0
    params: np.ndarray | None = None
    buffers: np.ndarray | None = None
    rows: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class TableConfig:
    """One embedding table of a model, as the shards and workers know it.

    Attributes:
        table: its number (the order of the model's sparse embeddings).
        name: the module's name in the model (for messages and exports).
        num_rows: ids are in ``[0, num_rows)``.
        width: floats per row.
        init / scale / zero_columns: initial values (see :func:`ps.hashing.initial_rows`).
        admit_after / max_rows / evict / expire_after_steps: the rows' lifecycle
            (:mod:`ps.server.lifecycle`; 1 / None / "lru" / None: every id keeps its row).
    """

    table: int
    name: str
    num_rows: int
    width: int
    init: str = "normal"
    scale: float = 0.01
    zero_columns: int = 0
    admit_after: int = 1
    max_rows: int | None = None
    evict: str = "lru"
    expire_after_steps: int | None = None

    def initial(self, seed: int, keys: np.ndarray) -> np.ndarray:
        return initial_rows(
            seed, self.table, keys, self.width, self.init, self.scale, self.zero_columns
        )
