"""The file sources: ``.npz`` arrays, ``.csv`` and ``.parquet`` tables.

Each has an ``inspect`` that reads headers only (the npz array headers and ``y``, a csv's first
block, the parquet footer and its target column) and a ``load`` that reads the samples. Paths
arrive confined to the data root (:func:`ps.jobs.paths.confine_paths`); here they must only
exist and be readable.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ps.errors import SpecError, clip
from ps.spec import DataSpec
from workers.categorical import check_columns, hash_fields
from workers.data.base import DataInfo, Raw, arrange_shape, outputs
from workers.layers import Input


@contextmanager
def usable_path(source: str, field: str) -> Iterator[None]:
    """Report an unusable path (a name too long, a NUL byte, a loop of links) as a
    :class:`SpecError` at ``field``."""
    try:
        yield
    except SpecError:
        raise
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(field, f"unusable path {clip(source)}: {reason}") from None


def existing_path(
    source: str, field: str = "data.source", directory: bool = False, path: Path | None = None
) -> Path:
    """The file (or ``directory``) ``source`` names, found at ``path`` (default: ``source``).

    Raises:
        SpecError: it does not exist, or the path is unusable.
    """
    with usable_path(source, field):
        path = Path(source) if path is None else path
        if directory and not path.is_dir():
            raise SpecError(
                field,
                f"unknown source {clip(source)}: not a bundled source (digits, synthetic-…), a "
                ".npz / .csv / .parquet file, or a directory of images (directory not found)",
            )
        if not directory and not path.is_file():
            raise SpecError(field, f"file not found: {clip(source)}")
    return path


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return clip(text.splitlines()[0], 300) if text else type(exc).__name__


@contextmanager
def _readable(path: Path, *errors: type[BaseException]) -> Iterator[None]:
    """Report a file the format's reader refuses (``errors``, or any OSError) as a
    :class:`SpecError` naming it."""
    try:
        yield
    except SpecError:
        raise
    except (OSError, *errors) as exc:
        raise SpecError("data.source", f"cannot read {path.name}: {first_line(exc)}") from None


def _require_arrays(names: list[str], path: Path) -> None:
    missing = {"X", "y"} - set(names)
    if missing:
        raise SpecError("data.source", f"{path.name} lacks array(s) {sorted(missing)}")


def npz_header(z) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of an open npz file's ``X``, from its header (nothing read)."""
    with z.zip.open("X.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(f)
    return shape, dtype


def inspect_npz(spec: DataSpec, loss: str) -> DataInfo:
    path = existing_path(spec.source)
    with _readable(path, ValueError, zipfile.BadZipFile), np.load(path, allow_pickle=False) as z:
        _require_arrays(z.files, path)
        shape, dtype = npz_header(z)
        y = np.asarray(z["y"])
    if not 2 <= len(shape) <= 4 or dtype.kind not in "biuf":
        raise SpecError(
            "data.source",
            f"{path.name}: X must be a numeric array of rank 2 to 4, got {dtype} {shape}",
        )
    if len(y) != shape[0]:
        raise SpecError(
            "data.source", f"{path.name}: X has {shape[0]} rows but y has {len(y)} values"
        )
    inputs = arrange_shape(tuple(shape[1:]), dtype.kind in "iu", spec.layout, path.name)
    return DataInfo(int(shape[0]), inputs, outputs(y, loss))


def load_npz(spec: DataSpec, seed: int, buckets: int) -> Raw:
    path = existing_path(spec.source)
    with _readable(path, ValueError, zipfile.BadZipFile), np.load(path, allow_pickle=False) as z:
        _require_arrays(z.files, path)
        return Raw(np.asarray(z["X"]), np.asarray(z["y"]))


@dataclass(frozen=True)
class TableFormat:
    """How to read one table format with pyarrow.

    Attributes:
        schema: ``path -> (schema, rows)`` from the header or footer only (rows None: unknown).
        read: ``(path, columns or None) -> pyarrow.Table``.
    """

    schema: Callable
    read: Callable


def _csv_schema(path: Path):
    import pyarrow.csv as pacsv

    with pacsv.open_csv(path) as reader:  # reads one block (1 MiB), not the file
        return reader.schema, None


def _read_csv(path: Path, columns: list[str] | None = None):
    import pyarrow.csv as pacsv

    options = pacsv.ConvertOptions(include_columns=columns) if columns else None
    return pacsv.read_csv(path, convert_options=options)


def _parquet_schema(path: Path):
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    return meta.schema.to_arrow_schema(), meta.num_rows


def _read_parquet(path: Path, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns)


_NO_ROWS = "{} has a header but no data rows"
CSV = TableFormat(_csv_schema, _read_csv)
PARQUET = TableFormat(_parquet_schema, _read_parquet)


def _arrow(path: Path, call: Callable, *args):
    """``call(path, *args)``, a pyarrow error reported as a :class:`SpecError` naming the file."""
    import pyarrow as pa

    with _readable(path, pa.ArrowException):
        return call(path, *args)


def feature_columns(
    schema, target: str | None, path: Path, categorical: list[str] = ()
) -> list[str]:
    """The numeric feature columns: every column but the target and the categorical ones."""
    import pyarrow as pa

    if target not in schema.names:
        raise SpecError(
            "data.target", f"column {clip(target)} not in {path.name} (has {clip(schema.names)})"
        )
    check_columns(schema.names, categorical, path.name)
    features = [f for f in schema if f.name != target and f.name not in categorical]
    if not features and not categorical:
        raise SpecError("data.source", f"{path.name} has no feature column besides the target")
    for f in features:
        if not (
            pa.types.is_integer(f.type)
            or pa.types.is_floating(f.type)
            or pa.types.is_boolean(f.type)
            or pa.types.is_null(f.type)
        ):
            raise SpecError(
                "data.source",
                f"{path.name}: feature column {clip(f.name)} is {f.type}, not numeric (list "
                "categorical columns in data.categorical)",
            )
    return [f.name for f in features]


def inspect_table(table: TableFormat, spec: DataSpec, loss: str) -> DataInfo:
    """A csv's or parquet file's columns from its header; a parquet file's target column too
    (one column is cheap to read there)."""
    path = existing_path(spec.source)
    schema, rows = _arrow(path, table.schema)
    features = feature_columns(schema, spec.target, path, spec.categorical)
    units = None
    if rows == 0:
        raise SpecError("data.source", _NO_ROWS.format(path.name))
    if rows is not None:
        column = _arrow(path, table.read, [spec.target]).column(spec.target)
        units = outputs(column.to_numpy(zero_copy_only=False), loss)
    fields = len(spec.categorical)
    distinct = rows * fields if rows is not None and fields else None
    return DataInfo(rows, Input((len(features),), fields=fields), units, distinct)


def load_table(table: TableFormat, spec: DataSpec, seed: int, buckets: int) -> Raw:
    """The numeric feature columns as float32, the target column, and the categorical columns
    hashed into ``buckets`` ids."""
    path = existing_path(spec.source)
    data = _arrow(path, table.read)
    features = feature_columns(data.schema, spec.target, path, spec.categorical)
    if data.num_rows == 0:
        raise SpecError("data.source", _NO_ROWS.format(path.name))
    columns = [data.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in features]
    x = np.column_stack(columns) if columns else np.zeros((data.num_rows, 0), np.float32)
    y = data.column(spec.target).to_numpy(zero_copy_only=False)
    if not spec.categorical:
        return Raw(x, y, numeric=tuple(features))
    ids = hash_fields(data, spec.categorical, buckets)
    return Raw(x, y, ids, tuple(spec.categorical), tuple(features))
