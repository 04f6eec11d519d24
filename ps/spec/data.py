"""The ``data:`` section of a job spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ps.errors import SpecError, clip
from ps.spec.base import (
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    MAX_SYNTHETIC_VALUES,
    Bytes,
    _plain_text,
    _Strict,
)
from ps.spec.sources import (
    BUNDLED_SOURCES,
    FILE_FORMATS,
    FILE_SUFFIXES,
    LAYOUTS,
    SOURCES,
    SourceKind,
    find_source,
    format_of,
    kind_of,
)

__all__ = [
    "BUNDLED_SOURCES",
    "FILE_SUFFIXES",
    "LAYOUTS",
    "MAX_CATEGORICAL",
    "MAX_IMAGE_SIDE",
    "AugmentSpec",
    "DataSpec",
]

MAX_CATEGORICAL = 1000  # categorical columns (fields) of a dataset
MAX_IMAGE_SIDE = 4096
MAX_SHUFFLE_BUFFER = 10_000_000  # rows of a worker's local shuffle buffer


class AugmentSpec(_Strict):
    """Random transforms of training images, drawn per sample from (seed, worker, step).

    Attributes:
        shift: translation by a whole number of pixels, up to this many, in each direction
            (uniform; whole pixels keep the image sharp).
        rotate: rotation up to this many degrees either way (uniform).
        scale: zoom drawn uniformly in ``[lo, hi]``.
        hflip: flip half of the images left to right.
        noise: std of Gaussian noise added (in normalized units).
    """

    shift: Annotated[int, Field(ge=0, le=MAX_IMAGE_SIDE)] = 0
    rotate: Annotated[float, Field(ge=0, le=180)] = 0.0
    scale: tuple[Annotated[float, Field(gt=0, le=10)], Annotated[float, Field(gt=0, le=10)]] = (
        1.0,
        1.0,
    )
    hflip: bool = False
    noise: Annotated[float, Field(ge=0, le=1e3)] = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> AugmentSpec:
        if self.scale[0] > self.scale[1]:
            raise SpecError(
                "data.augment.scale", f"[lo, hi] with lo <= hi (got {list(self.scale)})"
            )
        return self

    @property
    def identity(self) -> bool:
        """Whether it changes nothing."""
        return self == AugmentSpec()


class DataSpec(_Strict):
    """Where the data comes from and how it is split and normalized."""

    source: str = "digits"
    target: str | None = None
    n_samples: Annotated[int, Field(ge=10, le=100_000_000)] = 1000
    n_features: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    n_classes: Annotated[int, Field(ge=2, le=1000)] = 2
    noise: Annotated[float, Field(ge=0, le=1e6)] = 0.1
    validation_split: Annotated[float, Field(ge=0, lt=1)] = 0.1
    test_split: Annotated[float, Field(ge=0, lt=1)] = 0.2
    shuffle: bool = True
    normalize: Literal["standard", "minmax", "none"] = "standard"
    layout: Literal[LAYOUTS] | None = None  # type: ignore[valid-type]
    sequence_length: Annotated[int, Field(ge=2, le=10_000)] = 50
    categorical: Annotated[list[str], Field(max_length=MAX_CATEGORICAL)] = []
    n_fields: Annotated[int, Field(ge=1, le=MAX_CATEGORICAL)] = 8
    n_ids: Annotated[int, Field(ge=2, le=100_000_000)] = 1000
    image_size: (
        tuple[
            Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)],
            Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)],
        ]
        | None
    ) = None
    augment: AugmentSpec | None = None
    format: Literal[FILE_FORMATS] | None = None  # type: ignore[valid-type]
    streaming: bool | None = None
    max_in_memory: Annotated[Bytes, Field(ge=2**16, le=2**50)] = 2 * 2**30
    shuffle_buffer: Annotated[int, Field(ge=0, le=MAX_SHUFFLE_BUFFER)] = 10_000
    validation_source: str | None = None
    test_source: str | None = None

    @field_validator("categorical")
    @classmethod
    def _column_names(cls, v: list[str]) -> list[str]:
        for name in v:
            _plain_text(name, MAX_NAME_CHARS)
        repeated = sorted({n for n in v if v.count(n) > 1})
        if repeated:
            raise ValueError(f"lists {clip(repeated)} more than once")
        return v

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        _plain_text(v, MAX_PATH_CHARS)
        if find_source(v) is None:
            raise ValueError(_unknown_source(v))
        return v

    @field_validator("target")
    @classmethod
    def _target_text(cls, v: str | None) -> str | None:
        return v if v is None else _plain_text(v, MAX_NAME_CHARS)

    @field_validator("validation_source", "test_source")
    @classmethod
    def _split_source(cls, v: str | None) -> str | None:
        if v is None:
            return v
        _plain_text(v, MAX_PATH_CHARS)
        kind = find_source(v)
        if kind is None or kind.bundled:
            raise ValueError(
                f"{clip(v)} is not a file source: a .npz / .csv / .parquet file, a glob or a "
                "directory of them"
            )
        return v

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> DataSpec:
        if self.validation_split + self.test_split >= 1:
            raise SpecError(
                "data.test_split",
                f"validation_split + test_split must be < 1 "
                f"(got {self.validation_split} + {self.test_split})",
            )
        kind = self.kind
        if kind.needs_target and not self.target:
            raise SpecError("data.target", f"required for a {Path(self.source).suffix} source")
        if kind.synthetic:
            self._check_synthetic(kind)
        if kind.check is not None:
            kind.check(self)
        if self.categorical:
            self._check_categorical(kind)
        if kind.is_directory and self.target:
            raise SpecError("data.target", "an image directory's classes are its sub-directories")
        if self.image_size is not None and not kind.is_directory:
            raise SpecError("data.image_size", "only for a directory of images")
        if self.augment is not None and (not_images := self._not_images()):
            raise SpecError("data.augment", f"only for image data ({not_images})")
        fixed = kind.fixed_layout
        if fixed and self.layout not in (None, fixed):
            raise SpecError("data.layout", f"{self.source} is a {fixed}, not {self.layout!r}")
        self._check_files(kind)
        return self

    def _check_files(self, kind: SourceKind) -> None:
        """The keys of table files (format, streaming, separate validation and test data)."""
        files = kind.is_file_set or kind.is_table_file
        if self.format is not None and not kind.is_file_set:
            raise SpecError(
                "data.format", "only for a glob or a directory of files (a file's suffix says it)"
            )
        if self.streaming and not files:
            raise SpecError(
                "data.streaming", f"only for .npz / .csv / .parquet files (not {clip(self.source)})"
            )
        for key in ("validation_source", "test_source"):
            if getattr(self, key) is not None and not files:
                raise SpecError(f"data.{key}", "only beside a .npz / .csv / .parquet source")
        if self.augment is not None and self.streaming_requested:
            raise SpecError("data.augment", "only for image data held in memory")

    @property
    def streaming_requested(self) -> bool:
        """Whether the spec asks for streaming (a file set streams unless ``streaming: false``;
        a single file streams when asked, or when it is larger than ``max_in_memory``, which
        admission decides: :func:`workers.data.streams.streams`)."""
        if self.streaming is not None:
            return self.streaming
        return self.kind.is_file_set

    @property
    def file_format(self) -> str | None:
        """parquet, csv or npz for a file source (None: a directory the files must tell)."""
        kind = self.kind
        if kind.is_table_file:
            return kind.name
        return format_of(self.source, self.format) if kind.is_file_set else None

    def _check_synthetic(self, kind: SourceKind) -> None:
        width = kind.values_per_sample(self)
        values = self.n_samples * width
        if values > MAX_SYNTHETIC_VALUES:
            raise SpecError(
                "data.n_samples",
                f"{self.n_samples:,} samples × {width:,} values each = {values:,} values "
                f"(≈{values * 8 / 2**30:,.1f} GiB while generated) exceeds the synthetic-data "
                f"budget of {MAX_SYNTHETIC_VALUES:,} values",
            )

    def _check_categorical(self, kind: SourceKind) -> None:
        if kind.categorical != "columns":
            columns = " / ".join(k.suffix for k in SOURCES if k.categorical == "columns")
            own = ", ".join(k.name for k in SOURCES if k.categorical == "own")
            raise SpecError(
                "data.categorical",
                f"only for {columns} sources ({own} makes its own categorical fields)",
            )
        if self.target in self.categorical:
            raise SpecError("data.categorical", f"lists the target {clip(self.target)}")

    @property
    def informative_features(self) -> int:
        """Features that carry the classes in ``synthetic-classification`` (capped: scikit-learn
        places the class clusters on the vertices of a hypercube of this dimension)."""
        return max(2, min(self.n_features, self.n_features // 2 + 1, 30))

    def _not_images(self) -> str | None:
        """Why this source cannot be images (None: it can)."""
        if self.layout not in (None, "image"):
            return f"data.layout is {self.layout!r}"
        kind = self.kind
        if "image" not in kind.layouts:
            if kind.bundled:
                return f"{self.source} is not images"
            return f"a {Path(self.source).suffix} source is a {kind.fixed_layout}"
        default = kind.layout(self.layout)
        if default not in (None, "image"):
            return f"{self.source} is a {default} unless data.layout is image"
        return None

    @property
    def kind(self) -> SourceKind:
        """The kind of data the source names (:data:`ps.spec.sources.SOURCES`).

        Raises:
            SpecError: no kind (only a source replaced without validation can have none).
        """
        kind = kind_of(self.source, bool(self.target or self.format))
        if kind is None:
            raise SpecError("data.source", _unknown_source(self.source))
        return kind

    @property
    def is_image_directory(self) -> bool:
        """Whether the source is a directory of images (one sub-directory per class)."""
        return self.kind.is_directory

    @property
    def is_file_set(self) -> bool:
        """Whether the source is a glob or a directory of table files."""
        return self.kind.is_file_set

    @property
    def is_path(self) -> bool:
        """Whether the source is a path — a file or a directory of images — rather than a
        bundled or generated source (its path is confined to the data root at admission)."""
        return not self.kind.bundled

    @property
    def has_categorical(self) -> bool:
        """Whether the samples have categorical fields (ids for embedding tables)."""
        return bool(self.categorical) or self.kind.categorical == "own"


def _unknown_source(source: str) -> str:
    return (
        f"unknown source {clip(source)}: use one of {BUNDLED_SOURCES}, a path ending in "
        f"{' / '.join(FILE_SUFFIXES)}, a glob or directory of such files, or a directory of "
        "images (one sub-directory per class)"
    )
