"""Row gradients combined by key: what a push of embedding rows holds (distinct, sorted keys)."""

from __future__ import annotations

import numpy as np
import torch


def sum_rows(parts: list[tuple[np.ndarray, np.ndarray]], width: int):
    """Row gradients from several pushes combined: (distinct keys sorted, summed rows)."""
    if not parts:
        return np.empty(0, np.int64), np.empty((0, width), np.float32)
    keys = np.concatenate([k for k, _ in parts])
    grads = torch.from_numpy(np.concatenate([g for _, g in parts]))
    distinct, inverse = np.unique(keys, return_inverse=True)
    total = torch.zeros((len(distinct), width)).index_add_(0, torch.from_numpy(inverse), grads)
    return distinct, total.numpy()


def sum_duplicates(keys: np.ndarray, grads: np.ndarray, width: int):
    """(distinct keys sorted, their summed gradient rows), as ``nn.EmbeddingBag`` sums."""
    return sum_rows([(np.asarray(keys, np.int64), np.asarray(grads, np.float32))], width)
