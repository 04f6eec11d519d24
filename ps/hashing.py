"""Deterministic 64-bit hashing for sparse features: categorical values to ids, ids to shards,
and each embedding row's initial value.

Everything is a pure function of its inputs (never Python's salted ``hash``), so every process —
workers, shards on any node, a restored shard, a model loaded for prediction — agrees.
"""

from __future__ import annotations

import hashlib

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
MISSING = "\0missing"  # what a null categorical value hashes as (its own id per column)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on a uint64 array (wrapping arithmetic): a bijection that spreads
    nearby integers over the whole 64-bit range."""
    with np.errstate(over="ignore"):  # wrapping is the point (numpy warns on scalars only)
        x = np.asarray(x, dtype=np.uint64) + GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def text_hash(text: str) -> int:
    """A stable 64-bit hash of a string (blake2b)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def hash_column(name: str, values, buckets: int) -> np.ndarray:
    """The ids in ``[0, buckets)`` of one categorical column (a pyarrow array or chunked array).

    A value's id depends on the column's name, the value and its kind (integers are hashed as
    integers, anything else by its text), so equal values in different columns get different
    ids; nulls get an id of their own per column.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    salt = np.uint64(text_hash(name))
    if pa.types.is_integer(values.type) or pa.types.is_boolean(values.type):
        raw = values.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        ids = mix64(raw.astype(np.int64).view(np.uint64) ^ salt)
    else:  # strings and everything else: hash each distinct value's text once
        encoded = pc.dictionary_encode(values.cast(pa.string()))
        distinct = encoded.dictionary.to_pylist()
        codes = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        table = np.array([text_hash(f"{name}\0{v}") for v in distinct] or [0], dtype=np.uint64)
        ids = mix64(table[codes] ^ salt)
    if values.null_count:
        missing = mix64(np.array([text_hash(f"{name}{MISSING}")], dtype=np.uint64) ^ salt)
        ids = np.where(values.is_null().to_numpy(zero_copy_only=False), missing[0], ids)
    return (ids % np.uint64(buckets)).astype(np.int64)


def shard_of(table: int, keys: np.ndarray, shards: int) -> np.ndarray:
    """Which shard keeps each row of ``table``: a hash of (table, id), so hot ids spread."""
    if shards == 1:
        return np.zeros(len(keys), dtype=np.int64)
    mixed = mix64(np.asarray(keys, dtype=np.int64).view(np.uint64) ^ mix64(np.uint64(table)))
    return (mixed % np.uint64(shards)).astype(np.int64)


def _unit(bits: np.ndarray) -> np.ndarray:
    """uint64 hashes to floats in (0, 1) (53 random bits, never exactly 0)."""
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))


def initial_rows(
    seed: int, table: int, keys: np.ndarray, width: int, init: str, scale: float, zero: int = 0
) -> np.ndarray:
    """The initial values of rows ``keys`` of ``table``: a function of (seed, table, id, column)
    only — the same whichever shard creates the row, in whatever order, after any restore.

    Args:
        init: ``normal`` (std ``scale``), ``uniform`` (in ``[-scale, scale)``) or ``zeros``.
        zero: leading columns that start at zero (a factorization machine's linear weight).
    """
    keys = np.asarray(keys, dtype=np.int64)
    out = np.zeros((len(keys), width), dtype=np.float32)
    if init == "zeros" or width <= zero or not len(keys):
        return out
    with np.errstate(over="ignore"):
        salt = mix64(np.uint64(seed)) ^ mix64(np.uint64(table) + GOLDEN)
        base = mix64(keys.view(np.uint64) ^ salt)
        column = np.arange(width - zero, dtype=np.uint64) * GOLDEN
        first = _unit(mix64(base[:, None] + column))
        second = _unit(mix64(base[:, None] ^ (column + _M1)))
    if init == "uniform":
        values = (2.0 * first - 1.0) * scale
    else:  # normal, by Box-Muller on two independent streams
        values = np.sqrt(-2.0 * np.log(first)) * np.cos(2.0 * np.pi * second) * scale
    out[:, zero:] = values
    return out
