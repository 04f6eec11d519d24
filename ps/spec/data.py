"""The ``data:`` section of a job spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ps.errors import SpecError, clip
from ps.spec.base import MAX_NAME_CHARS, MAX_PATH_CHARS, MAX_SYNTHETIC_VALUES, _plain_text, _Strict

BUNDLED_SOURCES = (
    "digits",
    "synthetic-classification",
    "synthetic-regression",
    "synthetic-adding",
    "synthetic-ctr",
)
LAYOUTS = ("table", "image", "sequence")
FILE_SUFFIXES = (".npz", ".csv", ".parquet")
MAX_CATEGORICAL = 1000  # categorical columns (fields) of a dataset
MAX_IMAGE_SIDE = 4096


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
        if v in BUNDLED_SOURCES or Path(v).suffix.lower() in FILE_SUFFIXES:
            return v
        if v.startswith("synthetic-") or Path(v).suffix:
            raise ValueError(
                f"unknown source {clip(v)}: use one of {BUNDLED_SOURCES}, a path ending in "
                f"{' / '.join(FILE_SUFFIXES)}, or a directory of images (one sub-directory per "
                "class)"
            )
        return v  # a directory of images

    @field_validator("target")
    @classmethod
    def _target_text(cls, v: str | None) -> str | None:
        return v if v is None else _plain_text(v, MAX_NAME_CHARS)

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> DataSpec:
        if self.validation_split + self.test_split >= 1:
            raise SpecError(
                "data.test_split",
                f"validation_split + test_split must be < 1 "
                f"(got {self.validation_split} + {self.test_split})",
            )
        if Path(self.source).suffix.lower() in (".csv", ".parquet") and not self.target:
            raise SpecError("data.target", f"required for a {Path(self.source).suffix} source")
        if self.source.startswith("synthetic-"):
            self._check_synthetic()
        if self.categorical:
            if Path(self.source).suffix.lower() not in (".csv", ".parquet"):
                raise SpecError(
                    "data.categorical",
                    "only for .csv / .parquet sources (synthetic-ctr makes its own categorical "
                    "fields)",
                )
            if self.target in self.categorical:
                raise SpecError("data.categorical", f"lists the target {clip(self.target)}")
        if self.is_image_directory and self.target:
            raise SpecError("data.target", "an image directory's classes are its sub-directories")
        if self.image_size is not None and not self.is_image_directory:
            raise SpecError("data.image_size", "only for a directory of images")
        if self.augment is not None and (fixed_table := self._table_only()):
            raise SpecError("data.augment", f"only for image data ({fixed_table})")
        fixed = {
            "synthetic-classification": "table",
            "synthetic-regression": "table",
            "synthetic-adding": "sequence",
            "synthetic-ctr": "table",
            ".csv": "table",
            ".parquet": "table",
        }.get(self.source if self.source in BUNDLED_SOURCES else Path(self.source).suffix.lower())
        if fixed and self.layout not in (None, fixed):
            raise SpecError("data.layout", f"{self.source} is a {fixed}, not {self.layout!r}")
        return self

    def _check_synthetic(self) -> None:
        width = {
            "synthetic-adding": self.sequence_length * 2,
            "synthetic-ctr": self.n_fields,
        }.get(self.source, self.n_features)
        values = self.n_samples * width
        if values > MAX_SYNTHETIC_VALUES:
            raise SpecError(
                "data.n_samples",
                f"{self.n_samples:,} samples × {width:,} values each = {values:,} values "
                f"(≈{values * 8 / 2**30:,.1f} GiB while generated) exceeds the synthetic-data "
                f"budget of {MAX_SYNTHETIC_VALUES:,} values",
            )
        if self.source == "synthetic-classification":
            if self.n_features < 2:
                raise SpecError(
                    "data.n_features",
                    f"synthetic-classification needs >= 2 (got {self.n_features})",
                )
            most = 2 ** (self.informative_features - 1)
            if self.n_classes > most:
                raise SpecError(
                    "data.n_classes",
                    f"synthetic-classification with {self.n_features} features supports at most "
                    f"{most} classes (got {self.n_classes}); add features",
                )

    @property
    def informative_features(self) -> int:
        """Features that carry the classes in ``synthetic-classification`` (capped: scikit-learn
        places the class clusters on the vertices of a hypercube of this dimension)."""
        return max(2, min(self.n_features, self.n_features // 2 + 1, 30))

    def _table_only(self) -> str | None:
        """Why this source cannot be images (None: it can)."""
        if self.layout not in (None, "image"):
            return f"data.layout is {self.layout!r}"
        if self.source in BUNDLED_SOURCES and self.source != "digits":
            return f"{self.source} is not images"
        if self.source == "digits" and self.layout != "image":
            return "digits is a table unless data.layout is image"
        if Path(self.source).suffix.lower() in (".csv", ".parquet"):
            return f"a {Path(self.source).suffix} source is a table"
        return None

    @property
    def is_image_directory(self) -> bool:
        """Whether the source is a directory of images (one sub-directory per class)."""
        return self.source not in BUNDLED_SOURCES and not Path(self.source).suffix

    @property
    def has_categorical(self) -> bool:
        """Whether the samples have categorical fields (ids for embedding tables)."""
        return bool(self.categorical) or self.source == "synthetic-ctr"

    @property
    def is_file(self) -> bool:
        return self.source not in BUNDLED_SOURCES
