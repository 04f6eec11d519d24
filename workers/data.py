"""Datasets, splits, normalization, per-worker shards and minibatch order.

Everything here is a pure function of the spec and the seed, so a restarted worker or a resumed
job sees exactly the same splits, shards and batch order.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ps.errors import SpecError
from ps.spec import DataSpec


@dataclass
class Dataset:
    """A loaded, split and normalized dataset.

    ``x_*`` are float32 (n, features); ``y_*`` are int64 class indices (cross_entropy), float32
    0/1 (bce) or float32 (n, targets) (mse). ``shift``/``scale`` are the training statistics the
    features were normalized with; ``classes`` the original labels of the class indices.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shift: np.ndarray
    scale: np.ndarray
    loss: str
    classes: list = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_outputs(self) -> int:
        """Units of the model's last layer: classes (cross_entropy), 1 (bce), targets (mse)."""
        if self.loss == "cross_entropy":
            return len(self.classes)
        return 1 if self.loss == "bce" else self.y_train.shape[1]


def resolve_path(source: str, root: Path | None, field: str = "data.source") -> Path:
    """The data file a spec names; inside ``root`` when one is configured (no ``..`` escapes).

    Raises:
        SpecError: the path leaves ``root`` or does not exist.
    """
    path = Path(source)
    if root is not None:
        root = root.resolve()
        path = (root / path).resolve()
        if not path.is_relative_to(root):
            raise SpecError(field, f"{source!r} is outside the data root")
    if not path.is_file():
        raise SpecError(field, f"file not found: {source}")
    return path


def _read_file(spec: DataSpec, root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    path = resolve_path(spec.source, root)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = {"X", "y"} - set(z.files)
            if missing:
                raise SpecError("data.source", f"{path.name} lacks array(s) {sorted(missing)}")
            return np.asarray(z["X"]), np.asarray(z["y"])
    if suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], rows[1:]
        columns = {name: i for i, name in enumerate(header)}
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - pyarrow is in the dev extras
            raise SpecError("data.source", "parquet needs pyarrow: pip install pyarrow") from None
        table = pq.read_table(path)
        header = table.column_names
        columns = {name: i for i, name in enumerate(header)}
        body = list(zip(*(table.column(c).to_pylist() for c in header), strict=True))
    if spec.target not in columns:
        raise SpecError("data.target", f"column {spec.target!r} not in {path.name} (has {header})")
    t = columns[spec.target]
    features = [i for i in range(len(header)) if i != t]
    try:
        x = np.array([[float(r[i]) for i in features] for r in body], dtype=np.float32)
    except ValueError as exc:
        raise SpecError("data.source", f"{path.name}: non-numeric feature value ({exc})") from None
    return x, np.array([r[t] for r in body])


def _raw(spec: DataSpec, seed: int, root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if spec.source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data, d.target
    if spec.source == "synthetic-classification":
        from sklearn.datasets import make_classification

        informative = max(2, min(spec.n_features, spec.n_features // 2 + 1))
        return make_classification(
            n_samples=spec.n_samples,
            n_features=spec.n_features,
            n_informative=informative,
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
    return _read_file(spec, root)


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
    order = np.random.default_rng(seed).permutation(n) if spec.shuffle else np.arange(n)
    n_test = int(round(n * spec.test_split))
    n_val = int(round(n * spec.validation_split))
    n_train = n - n_test - n_val
    if n_train < 1:
        raise SpecError("data", f"the splits leave no training data out of {n} samples")
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def load_dataset(spec: DataSpec, loss: str, seed: int, root: Path | None = None) -> Dataset:
    """Load, split and normalize the data a spec describes.

    Raises:
        SpecError: missing file, missing column, non-numeric data, targets that do not fit the loss.
    """
    x, y = _raw(spec, seed, root)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) != len(y):
        raise SpecError(
            "data.source", f"X must be (n, features) with one y per row; got {x.shape}, {len(y)}"
        )
    if not np.isfinite(x).all():
        raise SpecError("data.source", "features contain NaN or infinite values")
    y, classes = _targets(np.asarray(y), loss)
    tr, va, te = split_indices(len(x), spec, seed)
    shift, scale = _statistics(x[tr], spec.normalize)
    norm = lambda a: ((a - shift) / scale).astype(np.float32)  # noqa: E731
    return Dataset(
        norm(x[tr]), y[tr], norm(x[va]), y[va], norm(x[te]), y[te], shift, scale, loss, classes
    )


def _statistics(x: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    features = x.shape[1]
    if how == "none":
        return np.zeros(features, np.float32), np.ones(features, np.float32)
    if how == "standard":
        shift, scale = x.mean(0), x.std(0)
    else:
        shift, scale = x.min(0), x.max(0) - x.min(0)
    # Constant features (digits has a few always-zero pixels) are centred, not divided by 0.
    scale = np.where(scale > 1e-12, scale, 1.0)
    return shift.astype(np.float32), scale.astype(np.float32)


def shard_bounds(n: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous, disjoint, equal-as-possible [lo, hi) ranges of the training split."""
    cuts = np.linspace(0, n, workers + 1).round().astype(int)
    return [(int(cuts[i]), int(cuts[i + 1])) for i in range(workers)]


def batches_per_epoch(n: int, workers: int, batch_size: int) -> int:
    """Steps per epoch, the same for every worker: its largest shard in batches of batch_size."""
    largest = max(hi - lo for lo, hi in shard_bounds(n, workers))
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
