"""Categorical features: hashing columns into ids, and the ``synthetic-ctr`` dataset.

A categorical value becomes an id in ``[0, buckets)`` by :func:`ps.hashing.hash_column` (the
column's name, the value and its kind; nulls get an id of their own). The same function runs
when a trained model predicts from raw rows, so the export needs only the column names and
``buckets``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ps.errors import SpecError, clip
from ps.hashing import hash_column, initial_rows

CTR_FACTORS = 4  # rank of the hidden factorization machine
CTR_INFORMATIVE = 0.2  # share of ids with a non-zero hidden weight
CTR_ZIPF = 1.1  # exponent of the ids' power-law frequencies
CTR_BIAS = -1.0


def field_names(n: int) -> list[str]:
    """The column names of ``synthetic-ctr``'s fields."""
    return [f"f{i}" for i in range(n)]


def hash_fields(columns: Mapping[str, Any], names: Sequence[str], buckets: int) -> np.ndarray:
    """The ``(rows, fields)`` int64 ids of the categorical columns ``names``."""
    import pyarrow as pa

    hashed = []
    for name in names:
        values = columns[name]
        if not isinstance(values, pa.Array | pa.ChunkedArray):
            values = pa.array(values)
        hashed.append(hash_column(name, values, buckets))
    return np.stack(hashed, axis=1) if hashed else np.zeros((0, 0), np.int64)


def power_law_ids(rng: np.random.Generator, n: int, n_ids: int) -> np.ndarray:
    """``n`` ids in ``[0, n_ids)`` with frequencies ∝ 1/(rank)^CTR_ZIPF (inverse CDF)."""
    a = 1.0 - CTR_ZIPF
    u = rng.random(n)
    rank = (1.0 + u * ((n_ids + 1.0) ** a - 1.0)) ** (1.0 / a)
    return np.minimum(rank.astype(np.int64) - 1, n_ids - 1)


def synthetic_ctr(
    n: int, n_fields: int, n_ids: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Click-through data with interactions: raw ids ``(n, n_fields)`` (each field's ids with
    power-law frequencies) and 0/1 labels drawn from a hidden factorization machine plus
    Gaussian logit noise of std ``noise``.

    Only a fifth of the ids carry weight (the rest are noise features an L1 model can drop),
    and about half the logit's variance comes from pairwise interactions, so a factorization
    machine can be told from logistic regression.
    """
    rng = np.random.default_rng([seed, 2013])
    ids = np.stack([power_law_ids(rng, n, n_ids) for _ in range(n_fields)], axis=1)
    pairs = max(1, n_fields * (n_fields - 1) // 2)
    w_std = 1.0 / np.sqrt(CTR_INFORMATIVE * n_fields)
    v_std = (1.0 / (pairs * CTR_INFORMATIVE**2 * CTR_FACTORS)) ** 0.25
    logit = np.full(n, CTR_BIAS)
    total = np.zeros((n, CTR_FACTORS))
    squares = np.zeros(n)
    hidden_seed = seed * 7919 + 17
    for f in range(n_fields):
        hidden = initial_rows(hidden_seed, f, ids[:, f], 1 + CTR_FACTORS, "normal", 1.0)
        informative = _informative(hidden_seed, f, ids[:, f])
        v = hidden[:, 1:] * v_std * informative[:, None]
        logit += hidden[:, 0] * w_std * informative
        total += v
        squares += (v * v).sum(axis=1)
    logit += 0.5 * ((total * total).sum(axis=1) - squares)
    logit += rng.normal(0.0, noise, n) if noise else 0.0
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return ids, y


def _informative(seed: int, field: int, ids: np.ndarray) -> np.ndarray:
    """Whether each (field, id) carries weight in the hidden model (a fixed fifth of ids)."""
    u = initial_rows(seed + 1, field, ids, 1, "uniform", 1.0)[:, 0]  # in [-1, 1)
    return (u < 2.0 * CTR_INFORMATIVE - 1.0).astype(np.float64)


def raw_rows_to_columns(rows: Any, needed: Sequence[str]) -> dict[str, Any]:
    """Raw rows for prediction — a pyarrow Table, a mapping of column → values, or a list of
    row mappings — as columns; every ``needed`` column must be there.

    Raises:
        ValueError: an unsupported type or a missing column.
    """
    import pyarrow as pa

    if isinstance(rows, pa.Table):
        columns = {name: rows.column(name) for name in rows.column_names}
    elif isinstance(rows, Mapping):
        columns = dict(rows)
    elif isinstance(rows, Sequence) and all(isinstance(r, Mapping) for r in rows):
        present = set().union(*rows) if rows else set()  # a key some rows lack: a missing value
        columns = {name: [r.get(name) for r in rows] for name in needed if name in present}
    else:
        raise ValueError(
            "raw rows are a pyarrow Table, a mapping of column -> values, or a list of row "
            f"mappings (got {type(rows).__name__})"
        )
    missing = [name for name in needed if name not in columns]
    if missing:
        raise ValueError(f"raw rows lack column(s) {clip(missing)}")
    return columns


def check_columns(names: Sequence[str], categorical: Sequence[str], where: str) -> None:
    """Every categorical column exists.

    Raises:
        SpecError: at ``data.categorical``.
    """
    absent = [c for c in categorical if c not in names]
    if absent:
        raise SpecError(
            "data.categorical", f"column(s) {clip(absent)} not in {where} (has {clip(list(names))})"
        )
