"""Table files read as work items: a glob or directory of parquet / csv / npz files (or one
large file), looked at from headers only, cut into work items, and read back block by block.

A *work item* is the unit a worker reads: a parquet row group, or a whole csv / npz file. Its
row count comes from the parquet footer or the npz header (a csv is counted once at admission,
by a streaming pass that holds one block). Rows are read in blocks of at most
:data:`BLOCK_ROWS`, so a reader holds one block of any item, however large the file.

Why not ``ray.data.read_parquet(...).streaming_split(n)``: measured here, one Ray Data
execution costs ~1.5 s of start-up per dataset (a row group reads in ~5 ms with pyarrow), and
``streaming_split(equal=True)`` drops rows to equalize the splits and cannot resume a split
mid-epoch — neither is exactly once. The items are read with pyarrow, the reader Ray Data's own
parquet datasource uses; who reads which item is decided by the job (docs/architecture.md).
"""

from __future__ import annotations

import glob
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ps.errors import SpecError, clip
from ps.spec.sources import FILE_FORMATS, is_glob
from workers.categorical import check_columns, hash_fields
from workers.data.files import feature_columns, first_line, npz_header

BLOCK_ROWS = 65_536  # rows a reader decodes at once
MAX_FILES = 1_000_000


@dataclass(frozen=True)
class WorkItem:
    """One unit of reading.

    Attributes:
        file: index of its file in :attr:`FileSet.files`.
        part: the parquet row group (0 for a csv or npz file: the whole file).
        start: its first row, counted within its file.
        rows: how many rows it has.
    """

    file: int
    part: int
    start: int
    rows: int


@dataclass(frozen=True)
class FileSet:
    """Table files of one schema, as work items.

    Attributes:
        files: the paths, sorted (a file's index names it in :class:`WorkItem`).
        format: parquet, csv or npz.
        target: the target column (None: npz, whose targets are ``y``).
        features: the numeric feature columns (npz: ``X``'s columns, named by number).
        categorical: the categorical columns, hashed to ids as blocks are read.
        items: every work item, in file order.
        nbytes: the files' total size on disk.
    """

    files: tuple[str, ...]
    format: str
    target: str | None
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    items: tuple[WorkItem, ...]
    nbytes: int

    @property
    def rows(self) -> int:
        return sum(item.rows for item in self.items)

    @property
    def row_bytes(self) -> int:
        """Bytes of one decoded row: float32 features, int64 ids, a float64 target."""
        return 4 * len(self.features) + 8 * len(self.categorical) + 8

    def name(self, item: WorkItem) -> str:
        return Path(self.files[item.file]).name


def load_readers() -> None:
    """Import the readers (pyarrow's parquet, csv and compute modules: ~40 MB of library code)."""
    import pyarrow.compute
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401


def list_files(source: str, declared: str | None, field: str = "data.source") -> tuple[list, str]:
    """The files a glob, a directory or one file names (sorted), and their format:
    ``declared`` (``data.format``: every file found is read as it), else their one suffix (a
    directory's files without a table suffix, and hidden or ``_``-files, are left out).

    Raises:
        SpecError: no files, files of several formats, a path that does not exist.
    """
    if is_glob(source):
        paths = sorted(p for p in glob.glob(source, recursive=True) if os.path.isfile(p))
        where = f"match {clip(source)}"
    elif os.path.isdir(source):
        paths = sorted(str(p) for p in Path(source).iterdir() if p.is_file())
        paths = [p for p in paths if not Path(p).name.startswith((".", "_"))]  # _SUCCESS, .crc
        where = f"in {clip(source)}"
        if declared is None:
            paths = [p for p in paths if _suffix(p) in FILE_FORMATS]
    elif os.path.isfile(source):
        paths, where = [source], clip(source)
    else:
        raise SpecError(field, f"not found: {clip(source)}")
    if not paths:
        raise SpecError(field, f"no .parquet / .csv / .npz files {where}")
    suffixes = sorted({_suffix(p) for p in paths})
    if declared is None and len(suffixes) > 1:
        raise SpecError(
            "data.format",
            f"the files {where} have several suffixes ({clip(suffixes)}): set data.format, or "
            "narrow the source to one kind",
        )
    fmt = declared or suffixes[0]
    if fmt not in FILE_FORMATS:
        raise SpecError(
            field, f"the files {where} are {fmt!r} files: set data.format (parquet, csv, npz)"
        )
    if len(paths) > MAX_FILES:
        raise SpecError(field, f"{len(paths):,} files {where} (at most {MAX_FILES:,})")
    return paths, fmt


def _suffix(path: str) -> str:
    return Path(path).suffix.lower().lstrip(".")


def inspect_files(
    source: str,
    declared: str | None,
    target: str | None,
    categorical: list[str],
    field: str = "data.source",
) -> FileSet:
    """The file set ``source`` names, from headers: every file must have the first file's
    columns, the target and the categorical columns; numeric features must be numeric.

    Raises:
        SpecError: naming the key and the file.
    """
    paths, fmt = list_files(source, declared, field)
    items: list[WorkItem] = []
    first = None
    for i, path in enumerate(paths):
        names, file_items, features = _inspect_one(fmt, Path(path), i, target, categorical, field)
        if first is None:
            first = (names, features, Path(path).name)
        elif names != first[0]:
            missing = [n for n in first[0] if n not in names]
            extra = [n for n in names if n not in first[0]]
            raise SpecError(
                field,
                f"{Path(path).name} has other columns than {first[2]}: "
                + (f"lacks {clip(missing)}" if missing else "")
                + (", " if missing and extra else "")
                + (f"has {clip(extra)} besides" if extra else "")
                + ("" if missing or extra else "in another order"),
            )
        items.extend(file_items)
    if not any(item.rows for item in items):
        raise SpecError(field, f"the files of {clip(source)} have no data rows")
    nbytes = sum(os.path.getsize(p) for p in paths)
    return FileSet(
        tuple(paths),
        fmt,
        target if fmt != "npz" else None,
        tuple(first[1]),
        tuple(categorical),
        tuple(item for item in items if item.rows),
        nbytes,
    )


def _inspect_one(fmt, path, index, target, categorical, field):
    """(column names, work items, numeric feature columns) of one file, from its header."""
    import pyarrow as pa

    try:
        if fmt == "npz":
            return _inspect_npz(path, index)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            schema = meta.schema.to_arrow_schema()
            items, start = [], 0
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                items.append(WorkItem(index, g, start, rows))
                start += rows
        else:
            import pyarrow.csv as pacsv

            rows = 0
            with pacsv.open_csv(path) as reader:  # one block at a time: counted, not loaded
                schema = reader.schema
                for batch in reader:
                    rows += batch.num_rows
            items = [WorkItem(index, 0, 0, rows)]
    except SpecError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise SpecError(field, f"cannot read {path.name}: {first_line(exc)}") from None
    features = feature_columns(schema, target, path, categorical)
    check_columns(schema.names, categorical, path.name)
    return list(schema.names), items, features


def _inspect_npz(path: Path, index: int):
    with np.load(path, allow_pickle=False) as z:
        if not {"X", "y"} <= set(z.files):
            raise SpecError("data.source", f"{path.name} lacks array(s) X and y")
        shape, dtype = npz_header(z)
    if len(shape) != 2 or dtype.kind not in "biuf":
        raise SpecError(
            "data.source", f"{path.name}: streamed X must be a numeric table (n, features)"
        )
    names = [f"x{j}" for j in range(shape[1])]
    return names, [WorkItem(index, 0, 0, int(shape[0]))], names


@dataclass
class Block:
    """Decoded rows of one work item: float32 features (not normalized), the raw targets,
    int64 ids (None: no categorical columns), and where they start in the item."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray | None
    offset: int


def read_item(
    files: FileSet, item: WorkItem, buckets: int, skip: int = 0, block_rows: int = BLOCK_ROWS
) -> Iterator[Block]:
    """The rows of ``item`` from row ``skip`` on, in blocks of at most ``block_rows``.

    Raises:
        SpecError: the file cannot be read, or has values the job cannot use (named).
    """
    import pyarrow as pa

    path = Path(files.files[item.file])
    try:
        yield from _blocks(files, item, path, buckets, skip, block_rows)
    except SpecError:
        raise
    except (OSError, pa.ArrowException, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise SpecError("data.source", f"cannot read {path.name}: {first_line(exc)}") from None


def _blocks(files, item, path, buckets, skip, block_rows):
    if files.format == "npz":
        with np.load(path, allow_pickle=False) as z:
            x, y = np.asarray(z["X"]), np.asarray(z["y"])
        if len(x) != item.rows or len(y) != item.rows:
            raise SpecError("data.source", f"{path.name} changed since the job was admitted")
        for lo in range(skip, item.rows, block_rows):
            hi = min(lo + block_rows, item.rows)
            yield _checked(Block(x[lo:hi].astype(np.float32), y[lo:hi], None, lo), path, 0)
        return
    columns = [*files.features, *files.categorical, files.target]
    offset = 0
    for batch in _batches(files.format, path, item, columns, block_rows):
        n = batch.num_rows
        if offset + n <= skip:
            offset += n
            continue
        if offset < skip:
            batch, offset, n = batch.slice(skip - offset), skip, n - (skip - offset)
        yield _checked(_decode(files, batch, buckets, offset), path, item.start)
        offset += n
    if offset != item.rows:
        raise SpecError(
            "data.source", f"{path.name} changed since the job was admitted (row count)"
        )


def _batches(fmt: str, path: Path, item: WorkItem, columns: list[str], block_rows: int):
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        yield from pf.iter_batches(batch_size=block_rows, row_groups=[item.part], columns=columns)
        return
    import pyarrow.csv as pacsv

    options = pacsv.ConvertOptions(include_columns=columns)
    with pacsv.open_csv(path, convert_options=options) as reader:
        for batch in reader:
            for lo in range(0, batch.num_rows, block_rows):
                yield batch.slice(lo, block_rows)


def _decode(files: FileSet, batch, buckets: int, offset: int) -> Block:
    cols = [
        batch.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in files.features
    ]
    x = np.column_stack(cols) if cols else np.zeros((batch.num_rows, 0), np.float32)
    y = batch.column(files.target).to_numpy(zero_copy_only=False)
    columns = {c: batch.column(c) for c in files.categorical}
    ids = hash_fields(columns, files.categorical, buckets) if files.categorical else None
    return Block(x, y, ids, offset)


def _checked(block: Block, path: Path, start: int) -> Block:
    """The block, unless it has a non-finite feature (named by file, row and column)."""
    if not np.isfinite(block.x).all():
        row, col = (int(i[0]) for i in np.nonzero(~np.isfinite(block.x)))
        raise SpecError(
            "data.source",
            f"{path.name}: numeric features contain NaN or infinite values (first: row "
            f"{start + block.offset + row} of the file, 0-based, feature {col})",
        )
    return block


@dataclass
class Rows:
    """Collected rows (features, raw targets, ids)."""

    x: list = field(default_factory=list)
    y: list = field(default_factory=list)
    ids: list = field(default_factory=list)

    def add(self, x, y, ids, keep) -> None:
        if keep.any():
            self.x.append(x[keep])
            self.y.append(y[keep])
            self.ids.append(None if ids is None else ids[keep])

    def arrays(self, width: int, fields: int) -> tuple:
        if not self.x:
            ids = np.zeros((0, fields), np.int64) if fields else None
            return np.zeros((0, width), np.float32), np.zeros(0), ids
        ids = None if self.ids[0] is None else np.concatenate(self.ids)
        return np.concatenate(self.x), np.concatenate(self.y), ids


def read_whole(files: FileSet, buckets: int) -> tuple:
    """Every row of a (small) file set: features, raw targets, ids."""
    rows = Rows()
    for item in files.items:
        for block in read_item(files, item, buckets):
            rows.add(block.x, block.y, block.ids, np.ones(len(block.x), bool))
    return rows.arrays(len(files.features), len(files.categorical))
