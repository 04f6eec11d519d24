"""Datasets, splits, normalization, per-worker shards and minibatch order.

Everything here is a pure function of the spec and the seed, so a restarted worker or a resumed
job sees exactly the same splits, shards and batch order.

- :mod:`~workers.data.sources`: the loading side of the source registry, one
  :class:`~workers.data.sources.Loader` (``inspect``, ``load``) per kind of
  :data:`ps.spec.sources.SOURCES`; the loaders themselves are in :mod:`~workers.data.bundled`
  (digits, ``synthetic-*``), :mod:`~workers.data.files` (npz, csv, parquet) and
  :mod:`workers.images` (directories of images);
- :mod:`~workers.data.base`: what loaders share (raw samples, :class:`DataInfo`, layouts,
  targets);
- :mod:`~workers.data.dataset`: :func:`load_dataset` (arrange, split, normalize);
- :mod:`~workers.data.splits`, :mod:`~workers.data.batching`: splits and statistics; worker
  shards and minibatch order.
"""

from workers.data.base import DataInfo, Raw, arrange_shape, layout_of, targets
from workers.data.batching import batches_per_epoch, epoch_batches, worker_rows
from workers.data.bundled import (
    DIGITS_CLASSES,
    DIGITS_ROWS,
    DIGITS_SIDE,
    adding_problem,
    load_digits,
)
from workers.data.dataset import Dataset, load_dataset
from workers.data.files import existing_path, usable_path
from workers.data.sources import LOADERS, Loader, inspect_data, loader_for
from workers.data.splits import split_indices, split_sizes, statistics

__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_ROWS",
    "DIGITS_SIDE",
    "LOADERS",
    "DataInfo",
    "Dataset",
    "Loader",
    "Raw",
    "adding_problem",
    "arrange_shape",
    "batches_per_epoch",
    "epoch_batches",
    "existing_path",
    "inspect_data",
    "layout_of",
    "load_dataset",
    "load_digits",
    "loader_for",
    "split_indices",
    "split_sizes",
    "statistics",
    "targets",
    "usable_path",
    "worker_rows",
]
