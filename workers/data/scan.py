"""The one streaming pass over a file set before training: the training statistics, the class
labels, the held-out rows and a training sample for the learning curve.

It reads every work item once, a block at a time, holding only what it collects (the
validation and test rows and the sample, bounded at admission by ``data.max_in_memory``), and
returns a :class:`~workers.data.dataset.Dataset` whose ``stream`` the workers read the training
split from. Normalization statistics are exact (float64 sums over every training row), so a
streamed job normalizes exactly as the same data held in memory would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ps.errors import SpecError
from ps.spec import DataSpec
from workers.data.base import targets
from workers.data.dataset import Dataset
from workers.data.filesets import FileSet, Rows, inspect_files, read_item, read_whole
from workers.data.splits import held_out_fractions
from workers.data.streams import (
    TEST,
    TRAIN,
    VALIDATION,
    Holdout,
    StreamSource,
    block_rows_for,
    encode_targets,
)


@dataclass
class _Moments:
    """Running per-feature sums of the training rows (float64)."""

    n: int = 0
    total: np.ndarray | None = None
    squares: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        x64 = x.astype(np.float64)
        if self.total is None:
            width = x.shape[1]
            self.total, self.squares = np.zeros(width), np.zeros(width)
            self.low, self.high = np.full(width, np.inf), np.full(width, -np.inf)
        self.n += len(x)
        self.total += x64.sum(0)
        self.squares += (x64 * x64).sum(0)
        self.low, self.high = np.minimum(self.low, x64.min(0)), np.maximum(self.high, x64.max(0))

    def statistics(self, how: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Shift and scale as :func:`workers.data.splits.statistics` computes them."""
        if self.total is None or how == "none":
            return np.zeros(width, np.float32), np.ones(width, np.float32)
        if how == "standard":
            mean = self.total / self.n
            shift, scale = mean, np.sqrt(np.maximum(self.squares / self.n - mean * mean, 0.0))
        else:
            shift, scale = self.low, self.high - self.low
        scale = np.where(scale > 1e-12, scale, 1.0)
        return shift.astype(np.float32), scale.astype(np.float32)


@dataclass
class _Pass:
    """What the one pass over the files collects."""

    moments: _Moments
    labels: set
    held: dict[int, Rows]
    sample: Rows
    train_rows: list[int]


def _read_all(
    files: FileSet, holdout: Holdout, loss: str, buckets: int, sample_share: float
) -> _Pass:
    """Read every work item once: training statistics and labels, the held-out rows and the
    sample (the training rows whose hash falls in the top ``sample_share`` of theirs)."""
    found = _Pass(_Moments(), set(), {VALIDATION: Rows(), TEST: Rows()}, Rows(), [])
    sample_from = 1.0 - sample_share * (1.0 - holdout.validation - holdout.test)
    for item in files.items:
        marks = holdout.marks(item)
        found.train_rows.append(int((marks == TRAIN).sum()))
        in_sample = holdout.units(item) >= sample_from
        for block in read_item(files, item, buckets):
            rows = slice(block.offset, block.offset + len(block.x))
            m = marks[rows]
            train = m == TRAIN
            found.moments.add(block.x[train])
            if loss != "mse":
                found.labels.update(np.unique(block.y[train]).tolist())
            for split, rows_of in found.held.items():
                rows_of.add(block.x, block.y, block.ids, m == split)
            found.sample.add(block.x, block.y, block.ids, train & in_sample[rows])
    return found


def scan_stream(
    spec: DataSpec, loss: str, seed: int, buckets: int, sample_rows: int, files: FileSet
) -> Dataset:
    """Read the file set once and return the dataset the job trains from: ``x_train`` etc. hold
    a sample of about ``sample_rows`` training rows (the learning curve's), the validation and
    test splits are held in memory, and ``stream`` streams the training split.

    Raises:
        SpecError: a file that cannot be read or has unusable values (named), targets that do
            not fit the loss, no training rows.
    """
    holdout = Holdout(seed, *held_out_fractions(spec))
    found = _read_all(files, holdout, loss, buckets, min(1.0, sample_rows / max(1, files.rows)))
    if sum(found.train_rows) < 1:
        raise SpecError("data", f"the splits leave no training data out of {files.rows} samples")
    width, fields = len(files.features), len(files.categorical)
    classes = _classes(found.labels, loss)
    shift, scale = found.moments.statistics(spec.normalize, width)
    source = StreamSource(
        files,
        holdout,
        tuple(found.train_rows),
        loss,
        classes,
        shift,
        scale,
        buckets,
        seed,
        spec.shuffle,
        spec.shuffle_buffer,
        block_rows_for(spec.max_in_memory, files.row_bytes),
    )
    splits = [found.sample.arrays(width, fields)]
    splits += [found.held[s].arrays(width, fields) for s in (VALIDATION, TEST)]
    for split, rows in separate_splits(spec, files, buckets).items():
        splits[split] = rows
    parts = [(source.normalize(x), encode_targets(y, loss, classes), ids) for x, y, ids in splits]
    (xt, yt, it), (xv, yv, iv), (xs, ys, is_) = parts
    return Dataset(
        *(xt, yt, xv, yv, xs, ys, shift, scale, loss, list(classes), it, iv, is_),
        fields=files.categorical,
        numeric=files.features,
        buckets=buckets if fields else 0,
        stream=source,
    )


def _classes(labels: set, loss: str) -> tuple:
    if loss == "mse":
        return ()
    _, classes = targets(np.array(sorted(labels)), loss)  # refuses too few (or, bce, many)
    return tuple(classes)


def inspect_split_source(spec: DataSpec, key: str, train: FileSet) -> FileSet:
    """The file set of ``data.validation_source`` or ``data.test_source``: the training
    source's format and columns.

    Raises:
        SpecError: at ``data.<key>``: unreadable, or other columns than the training data.
    """
    files = inspect_files(
        getattr(spec, key), train.format, spec.target, spec.categorical, f"data.{key}"
    )
    if files.features != train.features:
        raise SpecError(
            f"data.{key}",
            f"its numeric columns {list(files.features)} differ from data.source's "
            f"{list(train.features)}",
        )
    return files


def separate_splits(spec: DataSpec, train: FileSet, buckets: int) -> dict[int, tuple]:
    """The validation (1) and test (2) rows that separate sources give: features, raw targets,
    ids (read whole: held in memory, as every evaluation split is)."""
    keys = {VALIDATION: "validation_source", TEST: "test_source"}
    return {
        split: read_whole(inspect_split_source(spec, key, train), buckets)
        for split, key in keys.items()
        if getattr(spec, key) is not None
    }
