"""Embedding tables whose rows live on the parameter server: :class:`SparseEmbedding`.

In a worker, a ``SparseEmbedding`` reads only the rows of the distinct ids in its input (pulled
with the step's parameters where the model says which ids it will look up — its ``row_ids``
hook, planned once per step by :mod:`workers.rowplan` —; else fetched when the forward pass
reaches it), and after the backward
pass the worker pushes only those rows' gradients — summed over duplicates in the batch, as
``nn.EmbeddingBag`` does. Anywhere else (evaluation, an exported model) it looks rows up in its
own buffers: the trained rows, sorted by id; an id never trained reads as zeros.

User modules use it like ``nn.Embedding``::

    from workers.sparse import SparseEmbedding

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.items = SparseEmbedding(10_000_000, 16)   # a bound on the ids, not an allocation
            ...
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ps.protocol.messages import TableConfig
from ps.protocol.rows import sum_duplicates
from workers.rowplan import RowGradients, RowPlan, route

MAX_WIDTH = 65_536


class RowSource(Protocol):
    def embed(self, module: SparseEmbedding, ids: Tensor) -> Tensor: ...


class SparseEmbedding(nn.Module):
    """An embedding table of ``num_rows`` × ``dim`` whose rows live on the parameter server.

    Args:
        num_rows: ids must be in ``[0, num_rows)`` (a bound: only rows training touches exist).
        dim: floats per row.
        std: initial rows are normal with this std (``init="uniform"``: in ``[-std, std)``;
            ``"zeros"``); ``zero_columns`` leading columns start at zero.
    """

    def __init__(
        self,
        num_rows: int,
        dim: int,
        std: float = 0.01,
        init: str = "normal",
        zero_columns: int = 0,
        *,
        admit_after: int = 1,
        max_rows: int | None = None,
        evict: str = "lru",
        expire_after_steps: int | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= int(num_rows) <= 2**62:
            raise ValueError(f"num_rows must be in [1, 2**62], got {num_rows}")
        if not 1 <= int(dim) <= MAX_WIDTH:
            raise ValueError(f"dim must be in [1, {MAX_WIDTH}], got {dim}")
        if init not in ("normal", "uniform", "zeros") or not 0 <= std < float("inf"):
            raise ValueError("init must be normal, uniform or zeros with a finite std >= 0")
        check_lifecycle(admit_after, max_rows, evict, expire_after_steps)
        self.num_rows, self.dim = int(num_rows), int(dim)
        self.init, self.std, self.zero_columns = init, float(std), int(zero_columns)
        self.lifecycle = {
            "admit_after": int(admit_after),
            "max_rows": None if max_rows is None else int(max_rows),
            "evict": evict,
            "expire_after_steps": None if expire_after_steps is None else int(expire_after_steps),
        }
        self.table = -1  # set by tables_of()
        self.source: RowSource | None = None
        # Sorted ids and their rows; a sentinel id -1 (never looked up) keeps the lookup branchless.
        self.register_buffer("ids", torch.full((1,), -1, dtype=torch.long))
        self.register_buffer("rows", torch.zeros(1, self.dim))

    def forward(self, ids: Tensor) -> Tensor:
        if not torch.compiler.is_compiling():
            self.check(ids)
        if self.source is not None:
            return self.source.embed(self, ids)
        at = torch.searchsorted(self.ids, ids).clamp(max=self.ids.numel() - 1)
        found = (self.ids[at] == ids).unsqueeze(-1)
        return self.rows[at] * found

    def check(self, ids: Tensor) -> None:
        """Raises ``IndexError`` for ids outside the table (or not integers)."""
        if ids.dtype not in (torch.int64, torch.int32):
            raise IndexError(f"{self}: ids must be int64, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_rows):
            bad = ids[(ids < 0) | (ids >= self.num_rows)].reshape(-1)[0]
            raise IndexError(f"{self}: id {int(bad)} is outside the table of {self.num_rows} rows")

    def load_rows(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Keep ``rows`` of ``ids`` (sorted) for lookups outside training."""
        self.ids = torch.cat([torch.full((1,), -1, dtype=torch.long), torch.as_tensor(ids)])
        self.rows = torch.cat(
            [torch.zeros(1, self.dim), torch.as_tensor(rows, dtype=torch.float32)]
        )

    def _load_from_state_dict(self, state_dict, prefix, *args: Any) -> None:
        # The rows a checkpoint holds decide the buffers' sizes.
        for name in ("ids", "rows"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"{self.num_rows}, {self.dim}, trained rows={self.ids.numel() - 1}"

    def config(self, name: str) -> TableConfig:
        return TableConfig(
            self.table,
            name,
            self.num_rows,
            self.dim,
            self.init,
            self.std,
            self.zero_columns,
            **self.lifecycle,
        )


def check_lifecycle(
    admit_after: int, max_rows: int | None, evict: str, expire_after_steps: int | None
) -> None:
    """Refuse lifecycle options a table cannot have (see :mod:`ps.server.lifecycle`).

    Raises:
        ValueError: naming the option.
    """
    if not 1 <= int(admit_after) <= 65_535:
        raise ValueError(f"admit_after must be in [1, 65535], got {admit_after}")
    if max_rows is not None and int(max_rows) < 1:
        raise ValueError(f"max_rows must be at least 1 (or None: no bound), got {max_rows}")
    if evict not in ("lru", "lfu"):
        raise ValueError(f"evict must be lru or lfu, got {evict!r}")
    if expire_after_steps is not None and int(expire_after_steps) < 1:
        raise ValueError(f"expire_after_steps must be at least 1, got {expire_after_steps}")


def sparse_modules(net: nn.Module) -> list[tuple[str, SparseEmbedding]]:
    """The model's sparse embeddings in table order (module order)."""
    return [(n, m) for n, m in net.named_modules() if isinstance(m, SparseEmbedding)]


def tables_of(net: nn.Module) -> tuple[TableConfig, ...]:
    """Number the model's sparse embeddings (their table ids) and describe them."""
    out = []
    for i, (name, module) in enumerate(sparse_modules(net)):
        module.table = i
        out.append(module.config(name))
    return tuple(out)


def load_tables(net: nn.Module, tables: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    """Give each sparse embedding its rows (table -> (sorted ids, rows))."""
    for module in (m for _, m in sparse_modules(net)):
        ids, rows = tables.get(module.table, (np.empty(0, np.int64), None))
        module.load_rows(ids, rows if rows is not None else np.empty((0, module.dim), np.float32))


def planned_ids(net: nn.Module, ids: Tensor | None) -> list[tuple[int, Tensor]]:
    """The ids each sparse embedding of the model will look up for a batch with categorical
    ``ids`` (its ``row_ids`` hook), so their rows travel with the step's pull; empty where the
    model cannot say."""
    if ids is None or not hasattr(net, "row_ids"):
        return []
    return net.row_ids(ids)


def row_requests(net: nn.Module, ids: Tensor | None) -> list[tuple[int, np.ndarray]]:
    """The distinct ids (sorted) the model will read per table for a batch."""
    out: dict[int, list[np.ndarray]] = {}
    for table, looked_up in planned_ids(net, ids):
        out.setdefault(table, []).append(looked_up.detach().cpu().numpy().reshape(-1))
    return [(table, np.unique(np.concatenate(parts))) for table, parts in out.items()]


class RemoteRows:
    """A worker's row source: rows from the shards, gradients collected for the push.

    Args:
        fetch: ``fetch(table, keys) -> rows`` for rows not pulled with the step.
        device: where the model computes.
        shards: how many shards keep the rows (routing of rows fetched outside the plan).
    """

    def __init__(self, fetch, device: torch.device, shards: int) -> None:
        self.fetch = fetch
        self.device = device
        self.shards = shards
        self.plan = RowPlan()
        self.pulled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.touched: list[tuple[int, np.ndarray, Tensor, tuple | None | str]] = []

    def start(self, plan: RowPlan, pulled: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        """A new step: its row plan and the rows pulled for it."""
        self.plan, self.pulled = plan, pulled
        self.touched = []

    def embed(self, module: SparseEmbedding, ids: Tensor) -> Tensor:
        planned = self.plan.get(module.table)
        if planned is not None and planned.matches(ids) and module.table in self.pulled:
            keys, inverse, owners = planned.keys, planned.inverse, planned.owners
            rows = self.pulled[module.table][1]
        else:  # ids the model did not announce: find and fetch them now
            unique, inverse = torch.unique(ids.reshape(-1), sorted=True, return_inverse=True)
            keys, owners = unique.cpu().numpy(), "unrouted"
            rows = self.fetch(module.table, keys)
        leaf = torch.from_numpy(rows).to(self.device).requires_grad_(module.training)
        if module.training:
            self.touched.append((module.table, keys, leaf, owners))
        return nn.functional.embedding(inverse, leaf).reshape(*ids.shape, module.dim)

    def gradients(self) -> tuple[list[RowGradients], bool]:
        """(the step's row gradients per table — keys sorted and distinct, summed over
        duplicates, routed to their shards —, whether all are finite)."""
        by_table: dict[int, list[tuple[np.ndarray, np.ndarray, Any]]] = {}
        for table, keys, leaf, owners in self.touched:
            grad = leaf.grad
            rows = np.zeros(tuple(leaf.shape), np.float32) if grad is None else grad.cpu().numpy()
            by_table.setdefault(table, []).append((keys, rows, owners))
        out, finite = [], True
        for table, parts in sorted(by_table.items()):
            keys, rows, owners = parts[0]
            if len(parts) > 1:
                keys, rows = sum_duplicates(
                    np.concatenate([k for k, _, _ in parts]),
                    np.concatenate([r for _, r, _ in parts]),
                    rows.shape[1],
                )
            if len(parts) > 1 or isinstance(owners, str):
                owners = route(table, keys, self.shards)
            finite = finite and bool(np.isfinite(rows).all())
            out.append(RowGradients(table, keys, rows, owners))
        return out, finite


def bind(net: nn.Module, source: RowSource | None) -> None:
    """Point every sparse embedding of ``net`` at ``source`` (None: its own rows)."""
    for _, module in sparse_modules(net):
        # A plain attribute even when the source is a module: it is no part of the model's
        # parameters or state (nn.Module.__setattr__ would register it).
        object.__setattr__(module, "source", source)


class LocalRows(nn.Module):
    """A row source that keeps every table in this process: per table an
    ``nn.Embedding(sparse=True)`` over the ids the data has, with the rows the shards would
    create on first touch. It is the plain PyTorch baseline (one process, ``torch.optim``'s
    sparse optimizers) that the parameter server is measured and tested against.

    Args:
        net: the model (its sparse embeddings are numbered with :func:`tables_of` here).
        ids: every id the model will look up, per table (table -> int64 array, any order).
        seed: the job's seed (rows start as the shards would start them).
    """

    def __init__(self, net: nn.Module, ids: dict[int, np.ndarray], seed: int) -> None:
        super().__init__()
        self.keys: dict[int, Tensor] = {}
        self.tables = nn.ModuleDict()
        for config in tables_of(net):
            keys = np.unique(ids.get(config.table, np.empty(0, np.int64)))
            weight = torch.from_numpy(config.initial(seed, keys))
            self.keys[config.table] = torch.from_numpy(keys)
            self.tables[str(config.table)] = nn.Embedding.from_pretrained(
                weight, freeze=False, sparse=True
            )
        bind(net, self)

    def embed(self, module: SparseEmbedding, ids: Tensor) -> Tensor:
        """Rows of ``ids``; ids the data did not have read as zeros (as in evaluation)."""
        keys = self.keys[module.table]
        at = torch.searchsorted(keys, ids).clamp(max=max(len(keys) - 1, 0))
        found = (keys[at] == ids).unsqueeze(-1)
        return self.tables[str(module.table)](at) * found

    def rows(self, table: int) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, their rows) of ``table``."""
        weight = self.tables[str(table)].weight.detach().numpy().copy()
        return self.keys[table].numpy().copy(), weight
