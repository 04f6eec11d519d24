"""Datasets, splits, normalization, per-worker shards and minibatch order.

Everything here is a pure function of the spec and the seed, so a restarted worker or a resumed
job sees exactly the same splits, shards and batch order.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ps.errors import SpecError, clip
from ps.spec import DataSpec
from workers.categorical import check_columns, field_names, hash_fields, synthetic_ctr
from workers.layers import Input


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


def resolve_path(
    source: str, root: Path | None, field: str = "data.source", directory: bool = False
) -> Path:
    """The data file (or ``directory``) a spec names; inside ``root`` when one is configured
    (no ``..`` escapes).

    Raises:
        SpecError: the path leaves ``root`` or does not exist.
    """
    try:
        path = Path(source)
        if root is not None:
            root = root.resolve()
            path = (root / path).resolve()
            if not path.is_relative_to(root):
                raise SpecError(field, f"{clip(source)} is outside the data root")
        if directory and not path.is_dir():
            raise SpecError(
                field,
                f"unknown source {clip(source)}: not a bundled source (digits, synthetic-…), a "
                ".npz / .csv / .parquet file, or a directory of images (directory not found)",
            )
        if not directory and not path.is_file():
            raise SpecError(field, f"file not found: {clip(source)}")
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a loop of links
        if isinstance(exc, SpecError):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(field, f"unusable path {clip(source)}: {reason}") from None
    return path


@dataclass(frozen=True)
class DataInfo:
    """What is known of a data source without loading it (the cheap check at submission).

    Attributes:
        rows: samples in the source, or None where the format does not say (csv).
        inputs: the per-sample shape the model takes (and whether it is integer tokens).
        outputs: units of the model's last layer for the spec's loss, or None where only the
            full load can tell (a csv target column).
        distinct_ids: at most how many distinct categorical ids the data can have (None:
            unknown, or no categorical features).
    """

    rows: int | None
    inputs: Input
    outputs: int | None
    distinct_ids: int | None = None

    @property
    def nbytes(self) -> int | None:
        """Size of the inputs in memory, where the row count is known."""
        if self.rows is None:
            return None
        values = math.prod(self.inputs.shape) * (8 if self.inputs.tokens else 4)
        return self.rows * (values + 8 * self.inputs.fields)


DIGITS_ROWS, DIGITS_SIDE, DIGITS_CLASSES = 1797, 8, 10
DEFAULT_LAYOUT = {"digits": "table", "synthetic-adding": "sequence"}


def layout_of(spec: DataSpec) -> str | None:
    """The spec's layout, or its source's default (None: by the samples' rank)."""
    return spec.layout or DEFAULT_LAYOUT.get(spec.source)


def inspect_data(spec: DataSpec, loss: str, root: Path | None = None) -> DataInfo:
    """Check a data source cheaply: bundled and synthetic sources from the spec alone, files from
    their headers (npz array headers, the parquet footer, a csv's first block) and their target
    only (never the whole feature matrix).

    Raises:
        SpecError: a missing or unreadable file, missing arrays or columns, non-numeric features,
            targets that do not fit the loss, a layout the data cannot have.
    """
    if spec.source == "digits":
        shape = arrange_shape((DIGITS_SIDE, DIGITS_SIDE), False, layout_of(spec), "digits")
        return DataInfo(DIGITS_ROWS, shape, _outputs_for_classes(DIGITS_CLASSES, loss))
    if spec.source == "synthetic-classification":
        inputs = Input((spec.n_features,))
        return DataInfo(spec.n_samples, inputs, _outputs_for_classes(spec.n_classes, loss))
    if spec.source == "synthetic-ctr":
        inputs = Input((0,), fields=spec.n_fields)
        distinct = spec.n_fields * min(spec.n_ids, spec.n_samples)
        return DataInfo(spec.n_samples, inputs, _outputs_for_classes(2, loss), distinct)
    if spec.source in ("synthetic-regression", "synthetic-adding"):
        shape = (spec.n_features,) if spec.source == "synthetic-regression" else None
        inputs = Input(shape or (spec.sequence_length, 2))
        return DataInfo(spec.n_samples, inputs, 1 if loss == "mse" else None)
    if spec.is_image_directory:
        from workers.images import inspect_image_directory

        found = inspect_image_directory(resolve_path(spec.source, root, directory=True))
        shape = (found.channels, *(spec.image_size or found.size))
        return DataInfo(found.rows, Input(shape), _outputs_for_classes(len(found.classes), loss))
    path = resolve_path(spec.source, root)
    if path.suffix.lower() == ".npz":
        return _inspect_npz(path, loss, spec.layout)
    schema, rows = _schema(path)
    features = _feature_columns(schema, spec.target, path, spec.categorical)
    outputs = None
    if rows is not None:  # parquet: reading one column is cheap
        y = _read_table(path, [spec.target]).column(spec.target).to_numpy(zero_copy_only=False)
        outputs = _outputs(y, loss)
    fields = len(spec.categorical)
    distinct = rows * fields if rows is not None and fields else None
    return DataInfo(rows, Input((len(features),), fields=fields), outputs, distinct)


def arrange_shape(sample: tuple[int, ...], integers: bool, layout: str | None, name: str) -> Input:
    """The per-sample shape of raw samples of shape ``sample`` in ``layout`` (None: a table for
    rank 1, an image for ranks 2 and 3).

    Raises:
        SpecError: a layout the samples cannot have.
    """
    rank = len(sample)
    layout = layout or ("table" if rank == 1 else "image")
    if layout == "image" and rank in (2, 3):
        return Input(sample if rank == 3 else (1, *sample))
    if layout == "sequence" and rank == 1:
        return Input(sample, tokens=True) if integers else Input((*sample, 1))
    if layout == "sequence" and rank == 2:
        return Input(sample)
    if layout == "table":
        return Input((math.prod(sample),))
    raise SpecError(
        "data.layout",
        f"{name}: samples of shape {sample} cannot be a {layout} (a table is (features,), an "
        "image (height, width) or (channels, height, width), a sequence (steps,) of integer "
        "tokens or (steps, features))",
    )


def _inspect_npz(path: Path, loss: str, layout: str | None) -> DataInfo:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            _require_arrays(z.files, path)
            with z.zip.open("X.npy") as f:
                major, _ = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f)
            y = np.asarray(z["y"])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SpecError("data.source", f"cannot read {path.name}: {_first_line(exc)}") from None
    if not 2 <= len(shape) <= 4 or dtype.kind not in "biuf":
        raise SpecError(
            "data.source",
            f"{path.name}: X must be a numeric array of rank 2 to 4, got {dtype} {shape}",
        )
    if len(y) != shape[0]:
        raise SpecError(
            "data.source", f"{path.name}: X has {shape[0]} rows but y has {len(y)} values"
        )
    inputs = arrange_shape(tuple(shape[1:]), dtype.kind in "iu", layout, path.name)
    return DataInfo(int(shape[0]), inputs, _outputs(y, loss))


def _outputs_for_classes(classes: int, loss: str) -> int | None:
    if loss == "bce" and classes != 2:
        raise SpecError("model.loss", f"'bce' needs exactly 2 classes, found {classes}")
    return {"cross_entropy": classes, "bce": 1}.get(loss)


def _outputs(y: np.ndarray, loss: str) -> int:
    y, classes = _targets(np.asarray(y), loss)
    if loss == "mse":
        return y.shape[1]
    return len(classes) if loss == "cross_entropy" else 1


@dataclass
class _Raw:
    """Samples as read, before arrangement, splitting and normalization."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray | None = None
    fields: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()


def _read_file(spec: DataSpec, root: Path | None, buckets: int) -> _Raw:
    path = resolve_path(spec.source, root)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            _require_arrays(z.files, path)
            return _Raw(np.asarray(z["X"]), np.asarray(z["y"]))
    table = _read_table(path)
    features = _feature_columns(table.schema, spec.target, path, spec.categorical)
    columns = [table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in features]
    x = np.column_stack(columns) if columns else np.zeros((table.num_rows, 0), np.float32)
    y = table.column(spec.target).to_numpy(zero_copy_only=False)
    if not spec.categorical:
        return _Raw(x, y)
    ids = hash_fields(table, spec.categorical, buckets)
    return _Raw(x, y, ids, tuple(spec.categorical), tuple(features))


def _require_arrays(names: list[str], path: Path) -> None:
    missing = {"X", "y"} - set(names)
    if missing:
        raise SpecError("data.source", f"{path.name} lacks array(s) {sorted(missing)}")


def _read_table(path: Path, columns: list[str] | None = None):
    """A csv or parquet file as a pyarrow Table (one code path for both formats)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".csv":
            options = pacsv.ConvertOptions(include_columns=columns) if columns else None
            return pacsv.read_csv(path, convert_options=options)
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise SpecError("data.source", f"cannot read {path.name}: {_first_line(exc)}") from None


def _schema(path: Path):
    """Column names and types from a csv's first block or a parquet file's footer only."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".csv":
            with pacsv.open_csv(path) as reader:  # reads one block (1 MiB), not the file
                return reader.schema, None
        meta = pq.ParquetFile(path).metadata
        return meta.schema.to_arrow_schema(), meta.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise SpecError("data.source", f"cannot read {path.name}: {_first_line(exc)}") from None


def _feature_columns(
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return clip(text.splitlines()[0], 300) if text else type(exc).__name__


def _raw(spec: DataSpec, seed: int, root: Path | None, buckets: int) -> _Raw:
    if spec.source == "synthetic-ctr":
        raw, y = synthetic_ctr(spec.n_samples, spec.n_fields, spec.n_ids, spec.noise, seed)
        names = field_names(spec.n_fields)
        ids = hash_fields(dict(zip(names, raw.T, strict=True)), names, buckets)
        return _Raw(np.zeros((len(y), 0), np.float32), y, ids, tuple(names))
    return _Raw(*_raw_samples(spec, seed, root, buckets))


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: (1797 × 64 pixels as float64, their labels), the same arrays as
    ``sklearn.datasets.load_digits``, read from the file scikit-learn ships without importing
    scikit-learn (half a second of CPU in every process that loads data)."""
    package = importlib.util.find_spec("sklearn")
    locations = package.submodule_search_locations if package else None
    path = Path(locations[0]) / "datasets" / "data" / "digits.csv.gz" if locations else None
    if path is None or not path.is_file():  # another layout: ask scikit-learn
        from sklearn.datasets import load_digits as sklearn_digits

        d = sklearn_digits()
        return d.data, d.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


def _raw_samples(spec: DataSpec, seed: int, root: Path | None, buckets: int):
    if spec.source == "digits":
        x, y = load_digits()
        return x.reshape(-1, DIGITS_SIDE, DIGITS_SIDE), y
    if spec.source == "synthetic-adding":
        return adding_problem(spec.n_samples, spec.sequence_length, seed)
    if spec.source == "synthetic-classification":
        from sklearn.datasets import make_classification

        return make_classification(
            n_samples=spec.n_samples,
            n_features=spec.n_features,
            n_informative=spec.informative_features,
            n_redundant=0,
            n_classes=spec.n_classes,
            flip_y=min(spec.noise, 0.5),
            random_state=seed,
        )
    if spec.source == "synthetic-regression":
        from sklearn.datasets import make_regression

        return make_regression(
            n_samples=spec.n_samples,
            n_features=spec.n_features,
            noise=spec.noise,
            random_state=seed,
        )
    if spec.is_image_directory:
        from workers.images import load_image_directory

        return load_image_directory(
            resolve_path(spec.source, root, directory=True), spec.image_size
        )
    raw = _read_file(spec, root, buckets)
    return raw.x, raw.y, raw.ids, raw.fields, raw.numeric


def _targets(y: np.ndarray, loss: str) -> tuple[np.ndarray, list]:
    if loss == "mse":
        try:
            y = y.astype(np.float32)
        except ValueError:
            raise SpecError("data.target", "loss 'mse' needs numeric targets") from None
        return (y.reshape(len(y), -1), [])
    classes, index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise SpecError(
            "data.target", f"loss {loss!r} needs at least 2 classes, found {len(classes)}"
        )
    labels = [c.item() if hasattr(c, "item") else c for c in classes]
    if loss == "bce":
        if len(classes) != 2:
            raise SpecError("model.loss", f"'bce' needs exactly 2 classes, found {len(classes)}")
        return index.astype(np.float32), labels
    return index.astype(np.int64), labels


def split_indices(n: int, spec: DataSpec, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test indices; a seeded permutation, or file order without shuffle."""
    n_train, n_val, _ = split_sizes(n, spec)
    order = np.random.default_rng(seed).permutation(n) if spec.shuffle else np.arange(n)
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def split_sizes(n: int, spec: DataSpec) -> tuple[int, int, int]:
    """Rows of the training, validation and test splits of ``n`` samples.

    Raises:
        SpecError: the splits leave no training data.
    """
    n_test = int(round(n * spec.test_split))
    n_val = int(round(n * spec.validation_split))
    n_train = n - n_test - n_val
    if n_train < 1:
        raise SpecError("data", f"the splits leave no training data out of {n} samples")
    return n_train, n_val, n_test


def adding_problem(n: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber, 1997): each sample is ``steps`` pairs
    (a value uniform in [0, 1), a marker); two markers are 1; the target is the sum of the two
    marked values. A network must remember two values over up to ``steps`` steps."""
    rng = np.random.default_rng([seed, 1997])
    values = rng.random((n, steps), dtype=np.float32)
    order = rng.random((n, steps)).argsort(axis=1)[:, :2]  # two distinct steps per sample
    markers = np.zeros((n, steps), np.float32)
    np.put_along_axis(markers, order, 1.0, axis=1)
    return np.stack([values, markers], axis=-1), (values * markers).sum(axis=1)


def load_dataset(
    spec: DataSpec, loss: str, seed: int, root: Path | None = None, buckets: int = 2**20
) -> Dataset:
    """Load, arrange (layout), split and normalize the data a spec describes; categorical
    columns are hashed into ``buckets`` ids.

    Raises:
        SpecError: missing file, missing column, non-numeric data, targets that do not fit the
            loss, a layout the data cannot have.
    """
    raw = _raw(spec, seed, root, buckets)
    x, y = np.asarray(raw.x), raw.y
    if raw.ids is not None:
        return _tabular_with_ids(raw, spec, loss, seed, buckets)
    if x.ndim < 2 or len(x) != len(y):
        raise SpecError(
            "data.source", f"X must be (n, ...) with one y per sample; got {x.shape}, {len(y)}"
        )
    inputs = arrange_shape(x.shape[1:], x.dtype.kind in "iu", layout_of(spec), spec.source)
    x = x.reshape(len(x), *inputs.shape).astype(np.int64 if inputs.tokens else np.float32)
    if inputs.tokens and x.size and x.min() < 0:
        raise SpecError("data.source", "token ids must be >= 0")
    if not inputs.tokens and not np.isfinite(x).all():
        raise SpecError("data.source", "features contain NaN or infinite values")
    y, classes = _targets(np.asarray(y), loss)
    tr, va, te = split_indices(len(x), spec, seed)
    if inputs.tokens:
        return Dataset(x[tr], y[tr], x[va], y[va], x[te], y[te], None, None, loss, classes)
    shift, scale = _statistics(x[tr], spec.normalize)
    norm = lambda a: ((a - shift) / scale).astype(np.float32)  # noqa: E731
    return Dataset(
        norm(x[tr]), y[tr], norm(x[va]), y[va], norm(x[te]), y[te], shift, scale, loss, classes
    )


def _tabular_with_ids(raw: _Raw, spec: DataSpec, loss: str, seed: int, buckets: int) -> Dataset:
    x = np.asarray(raw.x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise SpecError("data.source", "numeric features contain NaN or infinite values")
    y, classes = _targets(np.asarray(raw.y), loss)
    tr, va, te = split_indices(len(x), spec, seed)
    shift, scale = _statistics(x[tr], spec.normalize)
    norm = lambda a: ((a - shift) / scale).astype(np.float32)  # noqa: E731
    return Dataset(
        norm(x[tr]), y[tr], norm(x[va]), y[va], norm(x[te]), y[te], shift, scale, loss, classes,
        raw.ids[tr], raw.ids[va], raw.ids[te], raw.fields, raw.numeric, buckets,
    )  # fmt: skip


def _statistics(x: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
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


def worker_rows(n: int, workers: int) -> list[tuple[int, int]]:
    """Each worker's rows: contiguous, disjoint, equal-as-possible [lo, hi) ranges."""
    cuts = np.linspace(0, n, workers + 1).round().astype(int)
    return [(int(cuts[i]), int(cuts[i + 1])) for i in range(workers)]


def batches_per_epoch(n: int, workers: int, batch_size: int) -> int:
    """Steps per epoch, the same for every worker: its largest shard in batches of batch_size."""
    largest = max(hi - lo for lo, hi in worker_rows(n, workers))
    return max(1, -(-largest // batch_size))


def epoch_batches(
    size: int, batches: int, seed: int, worker: int, epoch: int, shuffle: bool
) -> list[np.ndarray]:
    """The shard-local indices of each minibatch of one epoch.

    Every sample is visited once per epoch, in ``batches`` nearly equal batches; the order is
    a permutation seeded by (seed, worker, epoch), or the shard's order without shuffle.
    """
    order = (
        np.random.default_rng([seed, worker, epoch]).permutation(size)
        if shuffle
        else np.arange(size)
    )
    return np.array_split(order, batches)
