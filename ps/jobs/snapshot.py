"""The model's state as the shards hold it, joined: the flat dense state and the tables' rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Rows = tuple[np.ndarray, np.ndarray]  # ids sorted, their rows


@dataclass(frozen=True)
class ModelState:
    """Parameters then buffers (flat), and each embedding table's rows (those the shards
    captured: every trained row, or the rows evaluation reads)."""

    params: np.ndarray
    rows: list[Rows] = field(default_factory=list)

    def to_saved(self) -> dict[str, Any]:
        """Plain tensors for a checkpoint file."""
        return {
            "params": torch.as_tensor(self.params),
            "rows": [(torch.as_tensor(k), torch.as_tensor(v)) for k, v in self.rows],
        }

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> ModelState:
        rows = [(k.numpy(), v.numpy()) for k, v in saved.get("rows", [])]
        return cls(saved["params"].numpy(), rows)


def join_state(parts: list[dict[str, Any]]) -> ModelState:
    """The model's state from the shards' replies: their slices in order, then shard 0's
    buffers; each table's rows from every shard, sorted by id."""
    params = np.concatenate([p["params"] for p in parts] + [parts[0]["buffers"]])
    tables = zip(*[p.get("rows", []) for p in parts], strict=True)
    return ModelState(params, [join_rows(list(t)) for t in tables])


def join_rows(parts: list[Rows]) -> Rows:
    keys = np.concatenate([k for k, _ in parts])
    values = np.concatenate([v for _, v in parts])
    order = np.argsort(keys, kind="stable")
    return keys[order], values[order]
