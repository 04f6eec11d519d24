"""The data sources a job can name: the registry of source kinds, the spec side.

Each kind is declared once, here: how a ``data.source`` string is matched to it (a bundled
name, a file suffix, a directory), the layouts its samples can have (one: fixed), its default
layout, whether it needs ``data.target``, and where categorical fields come from. The loading
side — the cheap ``inspect`` run at admission and the full ``load`` run by the job's supervisor
— is :mod:`workers.data.sources`, one entry per kind under the same name (the spec layer imports
nothing from ``workers``).

A new kind (a Ray Data stream, say) is one more :class:`SourceKind` here, matched by a new
``match`` rule, and one more loader entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ps.errors import SpecError

if TYPE_CHECKING:
    from ps.spec.data import DataSpec

LAYOUTS = ("table", "image", "sequence")
SYNTHETIC_PREFIX = "synthetic-"  # names reserved for generated sources, never a directory


@dataclass(frozen=True)
class SourceKind:
    """One kind of data source.

    Attributes:
        name: the kind's name, the key of its loader in :mod:`workers.data.sources` (and the
            ``data.source`` value itself for a bundled source).
        match: how a source string is recognized: ``name`` (exactly the name), ``suffix`` (a path
            ending in ``suffix``, any case), ``directory`` (a path without a suffix, neither a
            bundled name nor starting with ``synthetic-``) or ``pattern`` (a glob: ``*``, ``?``
            or ``[`` in the path). A directory that the spec says holds tables (``data.target``
            or ``data.format``) is a ``pattern`` source too (:func:`kind_of`).
        suffix: the file suffix, for ``match == "suffix"``.
        layouts: the layouts the samples can have; a single one is fixed.
        default_layout: the layout without ``data.layout`` (None: a fixed layout, else by the
            samples' rank).
        needs_target: ``data.target`` names the target column (and is required).
        categorical: where categorical fields come from: ``columns`` (those ``data.categorical``
            lists), ``own`` (the source makes its own), ``none``.
        values_per_sample: for a generated source, the values it makes per sample (checked
            against the synthetic-data budget); None for data that is read.
        check: the kind's own checks of the ``data:`` section (raise :class:`SpecError`).
    """

    name: str
    match: Literal["name", "suffix", "directory", "pattern"]
    suffix: str = ""
    layouts: tuple[str, ...] = LAYOUTS
    default_layout: str | None = None
    needs_target: bool = False
    categorical: Literal["none", "columns", "own"] = "none"
    values_per_sample: Callable[[DataSpec], int] | None = None
    check: Callable[[DataSpec], None] | None = None

    def matches(self, source: str) -> bool:
        """Whether ``source`` names data of this kind (at most one kind matches a source)."""
        if self.match == "name":
            return source == self.name
        if self.match == "pattern":
            return is_glob(source)
        if is_glob(source):
            return False
        suffix = Path(source).suffix
        if self.match == "suffix":
            return suffix.lower() == self.suffix
        bare_name = source in BUNDLED_SOURCES or source.startswith(SYNTHETIC_PREFIX)
        return not suffix and not bare_name

    @property
    def bundled(self) -> bool:
        """Shipped with the service or generated (no path)."""
        return self.match == "name"

    @property
    def is_directory(self) -> bool:
        return self.match == "directory"

    @property
    def is_file_set(self) -> bool:
        """A glob or a directory of table files (read as work items, streamed by default)."""
        return self.match == "pattern"

    @property
    def is_table_file(self) -> bool:
        """One .npz, .csv or .parquet file."""
        return self.match == "suffix"

    @property
    def synthetic(self) -> bool:
        return self.values_per_sample is not None

    @property
    def fixed_layout(self) -> str | None:
        return self.layouts[0] if len(self.layouts) == 1 else None

    def layout(self, requested: str | None) -> str | None:
        """The samples' layout: ``requested`` (``data.layout``), else the default (None: by the
        samples' rank)."""
        return requested or self.default_layout or self.fixed_layout


def _check_classification(data: DataSpec) -> None:
    if data.n_features < 2:
        raise SpecError(
            "data.n_features", f"synthetic-classification needs >= 2 (got {data.n_features})"
        )
    most = 2 ** (data.informative_features - 1)
    if data.n_classes > most:
        raise SpecError(
            "data.n_classes",
            f"synthetic-classification with {data.n_features} features supports at most "
            f"{most} classes (got {data.n_classes}); add features",
        )


TABLE = ("table",)
FILE_FORMATS = ("parquet", "csv", "npz")  # what a file set may hold (data.format)


def is_glob(source: str) -> bool:
    """Whether ``source`` is a glob pattern (``*``, ``?`` or ``[``)."""
    return any(c in source for c in "*?[")


def format_of(source: str, declared: str | None) -> str | None:
    """The table format of a file source: ``declared`` (``data.format``), else its suffix (a
    glob's, e.g. ``clicks/*.parquet``); None where only the files can tell (a directory)."""
    if declared is not None:
        return declared
    suffix = Path(source).suffix.lower().lstrip(".")
    return suffix if suffix in FILE_FORMATS else None


def _check_file_set(data: DataSpec) -> None:
    fmt = format_of(data.source, data.format)
    if fmt in ("parquet", "csv") and not data.target:
        raise SpecError("data.target", f"required for {fmt} files")
    if fmt == "npz" and data.categorical:
        raise SpecError("data.categorical", "npz files have no named columns (X and y arrays)")


SOURCES: tuple[SourceKind, ...] = (
    SourceKind("digits", "name", default_layout="table"),
    SourceKind(
        "synthetic-classification",
        "name",
        layouts=TABLE,
        values_per_sample=lambda d: d.n_features,
        check=_check_classification,
    ),
    SourceKind(
        "synthetic-regression", "name", layouts=TABLE, values_per_sample=lambda d: d.n_features
    ),
    SourceKind(
        "synthetic-adding",
        "name",
        layouts=("sequence",),
        values_per_sample=lambda d: d.sequence_length * 2,
    ),
    SourceKind(
        "synthetic-ctr",
        "name",
        layouts=TABLE,
        categorical="own",
        values_per_sample=lambda d: d.n_fields,
    ),
    SourceKind("npz", "suffix", ".npz"),
    SourceKind("csv", "suffix", ".csv", TABLE, needs_target=True, categorical="columns"),
    SourceKind("parquet", "suffix", ".parquet", TABLE, needs_target=True, categorical="columns"),
    SourceKind("image-directory", "directory", default_layout="image"),
    SourceKind("files", "pattern", layouts=TABLE, categorical="columns", check=_check_file_set),
)
"""Every source kind; a source string matches at most one."""

KINDS = {kind.name: kind for kind in SOURCES}
BUNDLED_SOURCES = tuple(kind.name for kind in SOURCES if kind.bundled)
FILE_SUFFIXES = tuple(kind.suffix for kind in SOURCES if kind.match == "suffix")


def find_source(source: str) -> SourceKind | None:
    """The kind of data ``source`` names (None: no kind)."""
    return next((kind for kind in SOURCES if kind.matches(source)), None)


def kind_of(source: str, tables: bool) -> SourceKind | None:
    """The kind of data ``source`` names, where ``tables`` says the spec declares table files
    (``data.target`` or ``data.format``): a directory is then a file set, not images."""
    kind = find_source(source)
    if kind is not None and kind.is_directory and tables:
        return KINDS["files"]
    return kind
