"""The loading side of the source registry: one :class:`Loader` per source kind.

The spec side (:data:`ps.spec.sources.SOURCES`) says what a source string is and what the spec
must say about it; :data:`LOADERS` holds, under the same kind names, how to look at it cheaply
at admission (``inspect``: headers, never the whole feature matrix) and how to read its samples
(``load``, in the job's supervisor). Streamed data is not loaded but scanned
(:func:`workers.data.dataset.load_dataset`, :mod:`workers.data.scan`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ps.spec import DataSpec
from workers.data import bundled, files
from workers.data.base import DataInfo, Raw, arrange_shape, layout_of, outputs_for_classes
from workers.data.filesets import inspect_files, read_whole
from workers.images import inspect_image_directory, load_image_directory
from workers.layers import Input


@dataclass(frozen=True)
class Loader:
    """How one kind of source is looked at and read.

    Attributes:
        inspect: ``(spec, loss) -> DataInfo``, the cheap check at admission: what the samples
            look like, from the spec or the source's headers. It refuses everything ``load``
            would refuse that headers can show (missing arrays or columns, non-numeric
            features, a layout the samples cannot have, targets that do not fit the loss).
        load: ``(spec, seed, buckets) -> Raw``, the samples (categorical fields hashed into
            ``buckets`` ids), seeded where generated.
    """

    inspect: Callable[[DataSpec, str], DataInfo]
    load: Callable[[DataSpec, int, int], Raw]


def _inspect_images(spec: DataSpec, loss: str) -> DataInfo:
    found = inspect_image_directory(files.existing_path(spec.source, directory=True))
    shape = (found.channels, *(spec.image_size or found.size))
    inputs = arrange_shape(shape, False, layout_of(spec), Path(spec.source).name)
    return DataInfo(found.rows, inputs, outputs_for_classes(len(found.classes), loss))


def _load_images(spec: DataSpec, seed: int, buckets: int) -> Raw:
    path = files.existing_path(spec.source, directory=True)
    return Raw(*load_image_directory(path, spec.image_size))


def _file_set(spec: DataSpec):
    return inspect_files(spec.source, spec.file_format, spec.target, spec.categorical)


def _inspect_file_set(spec: DataSpec, loss: str) -> DataInfo:
    found = _file_set(spec)
    fields = len(found.categorical)
    outputs = {"bce": 1}.get(loss)  # classes and targets' width: from the scan before training
    inputs = Input((len(found.features),), fields=fields)
    return DataInfo(found.rows, inputs, outputs, found.rows * fields if fields else None)


def _load_file_set(spec: DataSpec, seed: int, buckets: int) -> Raw:
    found = _file_set(spec)
    x, y, ids = read_whole(found, buckets)
    return Raw(x, y, ids, found.categorical, found.features)


LOADERS: dict[str, Loader] = {
    "digits": Loader(bundled.inspect_digits, bundled.load_digits_source),
    "synthetic-classification": Loader(bundled.inspect_classification, bundled.load_classification),
    "synthetic-regression": Loader(bundled.inspect_regression, bundled.load_regression),
    "synthetic-adding": Loader(bundled.inspect_adding, bundled.load_adding),
    "synthetic-ctr": Loader(bundled.inspect_ctr, bundled.load_ctr),
    "npz": Loader(files.inspect_npz, files.load_npz),
    "csv": Loader(partial(files.inspect_table, files.CSV), partial(files.load_table, files.CSV)),
    "parquet": Loader(
        partial(files.inspect_table, files.PARQUET), partial(files.load_table, files.PARQUET)
    ),
    "image-directory": Loader(_inspect_images, _load_images),
    "files": Loader(_inspect_file_set, _load_file_set),
}
"""Every source kind's loader, by the kind's name in :data:`ps.spec.sources.SOURCES`."""


def loader_for(spec: DataSpec) -> Loader:
    """The loader of the spec's source."""
    return LOADERS[spec.kind.name]


def no_root(root: Path | None) -> None:
    """Refuse a data root here: paths are confined at admission
    (:func:`ps.jobs.paths.confine_paths`), before data is inspected or loaded."""
    if root is not None:
        raise ValueError(
            "workers.data reads paths as given: confine them to the data root first "
            "(ps.jobs.paths.confine_paths), then pass root=None"
        )


def inspect_data(spec: DataSpec, loss: str, root: Path | None = None) -> DataInfo:
    """Check a data source cheaply: bundled and synthetic sources from the spec alone, files from
    their headers (npz array headers, the parquet footer, a csv's first block) and their target
    only (never the whole feature matrix). ``spec``'s paths are already confined
    (``root`` must be None; it stays for callers that pass it).

    Raises:
        SpecError: a missing or unreadable file, missing arrays or columns, non-numeric features,
            targets that do not fit the loss, a layout the data cannot have.
    """
    no_root(root)
    return loader_for(spec).inspect(spec, loss)
