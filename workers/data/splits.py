"""Train / validation / test splits and the normalization statistics of the training split."""

from __future__ import annotations

import numpy as np

from ps.errors import SpecError
from ps.spec import DataSpec


def split_indices(n: int, spec: DataSpec, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test indices; a seeded permutation, or file order without shuffle."""
    n_train, n_val, _ = split_sizes(n, spec)
    order = np.random.default_rng(seed).permutation(n) if spec.shuffle else np.arange(n)
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def held_out_fractions(spec: DataSpec) -> tuple[float, float]:
    """The (validation, test) fractions split off the source: 0 where a separate source
    (``data.validation_source`` / ``data.test_source``) gives that split."""
    validation = 0.0 if spec.validation_source else spec.validation_split
    return validation, 0.0 if spec.test_source else spec.test_split


def split_sizes(n: int, spec: DataSpec) -> tuple[int, int, int]:
    """Rows of the training, validation and test splits of ``n`` samples.

    Raises:
        SpecError: the splits leave no training data.
    """
    validation, test = held_out_fractions(spec)
    n_test = int(round(n * test))
    n_val = int(round(n * validation))
    n_train = n - n_test - n_val
    if n_train < 1:
        raise SpecError("data", f"the splits leave no training data out of {n} samples")
    return n_train, n_val, n_test


def statistics(x: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (tables, sequences: the last axis) or per-channel (images: axis 1) shift and
    scale, shaped to broadcast against one sample."""
    axes = (0, 2, 3) if x.ndim == 4 else tuple(range(x.ndim - 1))
    if how == "none":
        shift, scale = np.zeros_like(x.mean(axes, keepdims=True)), None
        scale = np.ones_like(shift)
    elif how == "standard":
        shift, scale = x.mean(axes, keepdims=True), x.std(axes, keepdims=True)
    else:
        low, high = x.min(axes, keepdims=True), x.max(axes, keepdims=True)
        shift, scale = low, high - low
    # Constant features (digits has a few always-zero pixels) are centred, not divided by 0.
    scale = np.where(scale > 1e-12, scale, 1.0)
    return shift[0].astype(np.float32), scale[0].astype(np.float32)
