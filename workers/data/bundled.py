"""The bundled and generated sources: scikit-learn's digits and the ``synthetic-*`` data.

Each has an ``inspect_*`` (from the spec alone) and a ``load_*`` (the samples, seeded), the
entries of :data:`workers.data.sources.LOADERS`. scikit-learn is imported only to generate.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ps.spec import DataSpec
from workers.categorical import field_names, hash_fields, synthetic_ctr
from workers.data.base import DataInfo, Raw, arrange_shape, layout_of, outputs_for_classes
from workers.layers import Input

DIGITS_ROWS, DIGITS_SIDE, DIGITS_CLASSES = 1797, 8, 10


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


def inspect_digits(spec: DataSpec, loss: str) -> DataInfo:
    shape = arrange_shape((DIGITS_SIDE, DIGITS_SIDE), False, layout_of(spec), "digits")
    return DataInfo(DIGITS_ROWS, shape, outputs_for_classes(DIGITS_CLASSES, loss))


def load_digits_source(spec: DataSpec, seed: int, buckets: int) -> Raw:
    x, y = load_digits()
    return Raw(x.reshape(-1, DIGITS_SIDE, DIGITS_SIDE), y)


def inspect_classification(spec: DataSpec, loss: str) -> DataInfo:
    inputs = Input((spec.n_features,))
    return DataInfo(spec.n_samples, inputs, outputs_for_classes(spec.n_classes, loss))


def load_classification(spec: DataSpec, seed: int, buckets: int) -> Raw:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=spec.n_samples,
        n_features=spec.n_features,
        n_informative=spec.informative_features,
        n_redundant=0,
        n_classes=spec.n_classes,
        flip_y=min(spec.noise, 0.5),
        random_state=seed,
    )
    return Raw(x, y)


def inspect_regression(spec: DataSpec, loss: str) -> DataInfo:
    return DataInfo(spec.n_samples, Input((spec.n_features,)), 1 if loss == "mse" else None)


def load_regression(spec: DataSpec, seed: int, buckets: int) -> Raw:
    from sklearn.datasets import make_regression

    x, y = make_regression(
        n_samples=spec.n_samples, n_features=spec.n_features, noise=spec.noise, random_state=seed
    )
    return Raw(x, y)


def inspect_adding(spec: DataSpec, loss: str) -> DataInfo:
    inputs = Input((spec.sequence_length, 2))
    return DataInfo(spec.n_samples, inputs, 1 if loss == "mse" else None)


def load_adding(spec: DataSpec, seed: int, buckets: int) -> Raw:
    return Raw(*adding_problem(spec.n_samples, spec.sequence_length, seed))


def inspect_ctr(spec: DataSpec, loss: str) -> DataInfo:
    inputs = Input((0,), fields=spec.n_fields)
    distinct = spec.n_fields * min(spec.n_ids, spec.n_samples)
    return DataInfo(spec.n_samples, inputs, outputs_for_classes(2, loss), distinct)


def load_ctr(spec: DataSpec, seed: int, buckets: int) -> Raw:
    raw, y = synthetic_ctr(spec.n_samples, spec.n_fields, spec.n_ids, spec.noise, seed)
    names = field_names(spec.n_fields)
    ids = hash_fields(dict(zip(names, raw.T, strict=True)), names, buckets)
    return Raw(np.zeros((len(y), 0), np.float32), y, ids, tuple(names))
