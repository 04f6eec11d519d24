"""A DeepFM whose table is an ordinary dense ``nn.Embedding``: the model as it trains without
sparse tables, every row of the table pushed and pulled each step. ``benchmarks/sparse.py``
runs it as a user module (``model.module: ctr_dense:build``) to compare with the sparse path."""

from __future__ import annotations

import torch
from torch import nn


class DenseDeepFM(nn.Module):
    def __init__(self, rows: int, dim: int, fields: int, hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.table = nn.Embedding(rows, 1 + dim)
        nn.init.normal_(self.table.weight, std=0.01)
        with torch.no_grad():
            self.table.weight[:, 0] = 0.0
        self.bias = nn.Parameter(torch.zeros(1))
        self.deep = nn.Sequential(nn.Linear(fields * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        rows = self.table(ids)
        factors = rows[..., 1:]
        total = factors.sum(dim=1)
        fm = 0.5 * (total * total - (factors * factors).sum(dim=1)).sum(dim=-1)
        logit = self.bias + rows[..., 0].sum(dim=1) + fm + self.deep(factors.flatten(1))[:, 0]
        return logit.unsqueeze(-1)


def build(rows: int, dim: int, fields: int, hidden: int) -> nn.Module:
    return DenseDeepFM(rows, dim, fields, hidden)
