"""A loaded dataset: the source's samples arranged in their layout, split and normalized."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ps.errors import SpecError
from ps.spec import DataSpec
from workers.data.base import Raw, arrange_shape, layout_of, targets
from workers.data.filesets import FileSet, inspect_files
from workers.data.sources import loader_for, no_root
from workers.data.splits import split_indices, statistics
from workers.data.streams import encode_targets
from workers.layers import Input

if TYPE_CHECKING:
    from workers.data.streams import StreamSource


@dataclass
class Dataset:
    """A loaded, split and normalized dataset.

    ``x_*`` are float32 samples of the layout's shape — a table ``(n, features)``, images
    ``(n, channels, height, width)``, sequences ``(n, steps, features)`` — or int64 tokens
    ``(n, steps)``; ``y_*`` are int64 class indices (cross_entropy), float32 0/1 (bce) or
    float32 (n, targets) (mse). ``shift``/``scale`` are the training statistics the features were
    normalized with (None for tokens); ``classes`` the original labels of the class indices.

    With categorical features, ``ids_*`` are their int64 ids ``(n, fields)`` (hashed into
    ``buckets``), ``fields`` the columns' names and ``numeric`` the numeric columns' names
    (``x_*``, possibly none).

    A streamed dataset (``stream`` set) holds only a sample of the training split in
    ``x_train`` (the learning curve's rows); the workers read the whole split from ``stream``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shift: np.ndarray | None
    scale: np.ndarray | None
    loss: str
    classes: list = field(default_factory=list)
    ids_train: np.ndarray | None = None
    ids_val: np.ndarray | None = None
    ids_test: np.ndarray | None = None
    fields: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    buckets: int = 0
    stream: StreamSource | None = None

    @property
    def n_train(self) -> int:
        """Rows of the training split (streamed: all of them, not the sample held here)."""
        return self.stream.n_train if self.stream is not None else len(self.x_train)

    @property
    def inputs(self) -> Input:
        """The per-sample shape the model takes."""
        shape = tuple(self.x_train.shape[1:])
        return Input(shape, self.x_train.dtype.kind in "iu", len(self.fields))

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(x, y, ids) of ``train``, ``val`` or ``test``."""
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}"), getattr(self, f"ids_{name}")

    @property
    def n_outputs(self) -> int:
        """Units of the model's last layer: classes (cross_entropy), 1 (bce), targets (mse)."""
        if self.loss == "cross_entropy":
            return len(self.classes)
        return 1 if self.loss == "bce" else self.y_train.shape[1]


def streams(spec: DataSpec) -> bool:
    """Whether the training split is streamed: ``data.streaming`` where set, else for a glob
    or directory of files and for a single file larger than ``data.max_in_memory``."""
    if spec.streaming is not None:
        return spec.streaming
    kind = spec.kind
    if kind.is_file_set:
        return True
    path = spec.source
    return (
        kind.is_table_file and os.path.isfile(path) and os.path.getsize(path) > spec.max_in_memory
    )


def stream_files(spec: DataSpec) -> FileSet:
    """The file set of a file source (a single file is a set of one)."""
    return inspect_files(spec.source, spec.file_format, spec.target, spec.categorical)


def load_dataset(
    spec: DataSpec,
    loss: str,
    seed: int,
    root: Path | None = None,
    buckets: int = 2**20,
    sample_rows: int = 2048,
) -> Dataset:
    """Load, arrange (layout), split and normalize the data a spec describes; categorical
    columns are hashed into ``buckets`` ids. ``spec``'s paths are already confined (``root``
    must be None; it stays for callers that pass it). Streamed data (:func:`streams`) is
    scanned once instead (:func:`workers.data.scan.scan_stream`): about ``sample_rows``
    training rows are held, for the learning curve.

    Raises:
        SpecError: missing file, missing column, non-numeric data, targets that do not fit the
            loss, a layout the data cannot have.
    """
    from workers.data.scan import scan_stream, separate_splits  # they build Datasets

    no_root(root)
    if streams(spec):
        return scan_stream(spec, loss, seed, buckets, sample_rows, stream_files(spec))
    raw = loader_for(spec).load(spec, seed, buckets)
    x, tokens = _features(raw, spec)
    y, classes = targets(np.asarray(raw.y), loss)
    tr, va, te = split_indices(len(x), spec, seed)
    if tokens:
        shift = scale = None
        parts = [x[rows] for rows in (tr, va, te)]
    else:
        shift, scale = statistics(x[tr], spec.normalize)
        parts = [((x[rows] - shift) / scale).astype(np.float32) for rows in (tr, va, te)]
    ids = [None] * 3 if raw.ids is None else [raw.ids[rows] for rows in (tr, va, te)]
    ys = [y[tr], y[va], y[te]]
    if spec.validation_source or spec.test_source:
        separate = separate_splits(spec, stream_files(spec), buckets)
        for split, (xs, y_raw, id_s) in separate.items():
            parts[split] = ((xs - shift) / scale).astype(np.float32)
            ys[split], ids[split] = encode_targets(y_raw, loss, tuple(classes)), id_s
    return Dataset(
        parts[0],
        ys[0],
        parts[1],
        ys[1],
        parts[2],
        ys[2],
        shift,
        scale,
        loss,
        classes,
        *ids,
        fields=raw.fields,
        numeric=raw.numeric,
        buckets=0 if raw.ids is None else buckets,
    )


def _features(raw: Raw, spec: DataSpec) -> tuple[np.ndarray, bool]:
    """The samples arranged in the spec's layout (float32, or int64 tokens) and whether they are
    tokens; numeric columns beside categorical fields stay a float32 table.

    Raises:
        SpecError: samples that do not match the targets or the layout, bad values.
    """
    if raw.ids is not None:
        x = np.asarray(raw.x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise SpecError(
                "data.source",
                f"numeric features contain NaN or infinite values{_first_bad(x, raw)}",
            )
        return x, False
    x = np.asarray(raw.x)
    if x.ndim < 2 or len(x) != len(raw.y):
        raise SpecError(
            "data.source", f"X must be (n, ...) with one y per sample; got {x.shape}, {len(raw.y)}"
        )
    inputs = arrange_shape(x.shape[1:], x.dtype.kind in "iu", layout_of(spec), spec.source)
    x = x.reshape(len(x), *inputs.shape).astype(np.int64 if inputs.tokens else np.float32)
    if inputs.tokens and x.size and x.min() < 0:
        raise SpecError("data.source", "token ids must be >= 0")
    if not inputs.tokens and not np.isfinite(x).all():
        raise SpecError(
            "data.source", f"features contain NaN or infinite values{_first_bad(x, raw)}"
        )
    return x, inputs.tokens


def _first_bad(x: np.ndarray, raw: Raw) -> str:
    """Where the first non-finite value is: `` (first: row 3, column 'age' = nan)``; rows are
    counted from 1 after the header, as a spreadsheet shows a csv."""
    flat = x.reshape(len(x), -1)
    row, col = (int(i[0]) for i in np.nonzero(~np.isfinite(flat)))
    named = len(raw.numeric) == flat.shape[1]
    column = repr(raw.numeric[col]) if named else f"{col} (0-based)"
    return f" (first: row {row + 1}, column {column} = {flat[row, col]})"
