"""The job spec: one validated model of ``shared/JOBSPEC.md``.

YAML, JSON, the gRPC ``JobSpec`` message and Python dicts all go through :func:`parse_spec`.
Unknown keys and bad values are rejected with the key path and the allowed choices or range
(:class:`ps.errors.SpecError`), before anything starts. The optimizer and regularization sections
are checked by :mod:`ps.optim` (one source of truth for hyperparameters).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ps.errors import SpecError, clip
from ps.optim import resolve_optimizer, resolve_regularization

MAX_REPORTED_PROBLEMS = 10
BUNDLED_SOURCES = ("digits", "synthetic-classification", "synthetic-regression")
FILE_SUFFIXES = (".npz", ".csv", ".parquet")
ACTIVATIONS = (
    "linear",
    "relu",
    "leaky_relu",
    "prelu",
    "abs",
    "maxout",
    "sigmoid",
    "tanh",
    "hard_tanh",
    "softplus",
)
INITIALIZERS = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "orthogonal",
    "truncated_normal",
    "normal",
    "uniform",
    "zeros",
)


# Budgets checked before anything is allocated (docs/operations.md, "Limits").
MAX_PATH_CHARS = 4096
MAX_NAME_CHARS = 200
MAX_LAYERS = 1000
MAX_SYNTHETIC_VALUES = 100_000_000  # n_samples × n_features of a generated dataset
MAX_INIT_MAGNITUDE = 1e6  # initializer means, bounds and spreads


class _Strict(BaseModel):
    # allow_inf_nan=False: every float in a spec is finite (inf/NaN would be stored as null and
    # could never be read back).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _plain_text(v: str, limit: int) -> str:
    if "\x00" in v:
        raise ValueError("must not contain a NUL character")
    if len(v) > limit:
        raise ValueError(f"is {len(v)} characters long (at most {limit})")
    return v


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

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        _plain_text(v, MAX_PATH_CHARS)
        if v in BUNDLED_SOURCES or Path(v).suffix.lower() in FILE_SUFFIXES:
            return v
        raise ValueError(
            f"unknown source {clip(v)}: use one of {BUNDLED_SOURCES} or a path ending in "
            f"{' / '.join(FILE_SUFFIXES)}"
        )

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
        return self

    def _check_synthetic(self) -> None:
        values = self.n_samples * self.n_features
        if values > MAX_SYNTHETIC_VALUES:
            raise SpecError(
                "data.n_samples",
                f"{self.n_samples:,} samples × {self.n_features:,} features = {values:,} values "
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

    @property
    def is_file(self) -> bool:
        return self.source not in BUNDLED_SOURCES


class Activation(_Strict):
    """An activation with its parameters (a bare name in YAML is accepted too)."""

    type: Literal[ACTIVATIONS] = "linear"  # type: ignore[valid-type]
    negative_slope: Annotated[float, Field(ge=0, le=1000)] = 0.01
    pieces: Annotated[int, Field(ge=2, le=16)] = 2


class Init(_Strict):
    """A weight initializer with its parameters (a bare name in YAML is accepted too)."""

    type: Literal[INITIALIZERS] = "glorot_uniform"  # type: ignore[valid-type]
    mean: Annotated[float, Field(ge=-MAX_INIT_MAGNITUDE, le=MAX_INIT_MAGNITUDE)] = 0.0
    std: Annotated[float, Field(gt=0, le=MAX_INIT_MAGNITUDE)] = 0.05
    low: Annotated[float, Field(ge=-MAX_INIT_MAGNITUDE, le=MAX_INIT_MAGNITUDE)] = -0.05
    high: Annotated[float, Field(ge=-MAX_INIT_MAGNITUDE, le=MAX_INIT_MAGNITUDE)] = 0.05

    @model_validator(mode="after")
    def _ordered(self) -> Init:
        if self.type == "uniform" and self.low >= self.high:
            raise ValueError(f"uniform needs low < high (got {self.low} >= {self.high})")
        return self


def _named(v: Any) -> Any:
    return {"type": v} if isinstance(v, str) else v


class DenseLayer(_Strict):
    type: Literal["dense"]
    units: Annotated[int, Field(ge=1, le=1_000_000)]
    activation: Activation = Activation()
    init: Init = Init()
    bias_init: Init = Init(type="zeros")
    bias: bool = True

    _name_activation = field_validator("activation", mode="before")(_named)
    _name_init = field_validator("init", "bias_init", mode="before")(_named)


class DropoutLayer(_Strict):
    type: Literal["dropout"]
    rate: Annotated[float, Field(ge=0, lt=1)]


Layer = Annotated[DenseLayer | DropoutLayer, Field(discriminator="type")]


class ModelSpec(_Strict):
    """A sequential network; the input size comes from the data."""

    layers: Annotated[list[Layer], Field(min_length=1, max_length=MAX_LAYERS)]
    loss: Literal["cross_entropy", "mse", "bce"] = "cross_entropy"
    init_from: str | None = None

    @field_validator("init_from")
    @classmethod
    def _path_text(cls, v: str | None) -> str | None:
        return v if v is None else _plain_text(v, MAX_PATH_CHARS)

    @model_validator(mode="after")
    def _ends_in_dense(self) -> ModelSpec:
        if self.layers[-1].type != "dense":
            raise SpecError(
                f"model.layers.{len(self.layers) - 1}.type",
                "the last layer must be dense (it produces the outputs)",
            )
        return self


class EarlyStopping(_Strict):
    monitor: Literal["val_loss", "val_accuracy", "train_loss"] = "val_loss"
    patience: Annotated[int, Field(ge=1)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0
    restore_best: bool = True


class Resources(_Strict):
    num_cpus: Annotated[float, Field(ge=0, le=1024)] = 1.0
    num_gpus: Annotated[float, Field(ge=0, le=64)] = 0.0


class TrainingSpec(_Strict):
    workers: Annotated[int, Field(ge=1, le=1024)] = 2
    mode: Literal["sync", "async", "ssp"] = "sync"
    staleness: Annotated[int, Field(ge=0, le=10_000)] = 2
    batch_size: Annotated[int, Field(ge=1)] = 64
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 10
    max_steps: Annotated[int, Field(ge=0)] | None = None
    eval_every_steps: Annotated[int, Field(ge=1)] | None = None
    early_stopping: EarlyStopping | None = None
    worker_resources: Resources = Resources()
    max_failures: Annotated[int, Field(ge=0, le=1000)] = 3
    compression: Literal["none", "fp16", "bf16", "topk"] = "none"
    transport: Literal["auto", "object_store"] = "auto"
    topk_ratio: Annotated[float, Field(gt=0, le=1)] = 0.01
    divergence_threshold: Annotated[int, Field(ge=1)] = 20


class PSSpec(_Strict):
    shards: Annotated[int, Field(ge=1, le=256)] = 1
    resources: Resources = Resources(num_cpus=0.0)
    max_params: Annotated[int, Field(ge=1, le=10_000_000_000)] = 100_000_000


class CheckpointSpec(_Strict):
    every_steps: Annotated[int, Field(ge=1)] = 200
    keep: Annotated[int, Field(ge=1, le=1000)] = 3


class JobSpec(_Strict):
    """A validated job spec with every default filled in."""

    name: str | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0

    @field_validator("name")
    @classmethod
    def _name_text(cls, v: str | None) -> str | None:
        return v if v is None else _plain_text(v, MAX_NAME_CHARS)

    data: DataSpec = DataSpec()
    model: ModelSpec
    optimizer: dict[str, Any] = Field(
        default_factory=lambda: {"name": "adam"}, validate_default=True
    )
    regularization: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    training: TrainingSpec = TrainingSpec()
    ps: PSSpec = PSSpec()
    checkpoint: CheckpointSpec = CheckpointSpec()

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer(cls, v: Any) -> dict[str, Any]:
        if not isinstance(v, Mapping):
            raise SpecError("optimizer", f"must be a mapping, got {type(v).__name__}")
        return resolve_optimizer(v, defer_t_max=True)

    @field_validator("regularization", mode="before")
    @classmethod
    def _regularization(cls, v: Any) -> dict[str, Any]:
        if v is not None and not isinstance(v, Mapping):
            raise SpecError("regularization", f"must be a mapping, got {type(v).__name__}")
        return resolve_regularization(v)

    @model_validator(mode="after")
    def _monitor_has_data(self) -> JobSpec:
        es = self.training.early_stopping
        if es is not None and es.monitor.startswith("val_") and self.data.validation_split == 0:
            raise SpecError(
                "training.early_stopping.monitor",
                f"{es.monitor!r} needs data.validation_split > 0 (or monitor train_loss)",
            )
        if self.model.loss == "mse" and es is not None and es.monitor == "val_accuracy":
            raise SpecError(
                "training.early_stopping.monitor", "val_accuracy is undefined for loss 'mse'"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML-safe), defaults included."""
        return json.loads(self.model_dump_json())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _path(loc: tuple[Any, ...]) -> str:
    # Discriminated unions add the tag (e.g. 'dense') to the location; it is not a key.
    return ".".join(str(p) for p in loc if p not in ("dense", "dropout", "function-after"))


def _describe(err: Mapping[str, Any]) -> tuple[str, str]:
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, SpecError):
        return cause.path, cause.message
    path = _path(err["loc"])
    if err["type"] == "extra_forbidden":
        return path, "unknown field"
    if err["type"] == "missing":
        return path, "required field is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "union_tag_invalid":
        expected = ctx.get("expected_tags", "")
        return (
            f"{path}.type" if path else "type",
            f"unknown type {clip(ctx.get('tag'))} (choose from {expected})",
        )
    if len(msg) > 300:  # pydantic's messages may quote the input
        msg = msg[:300] + "…"
    return path, f"{msg} (got {clip(err.get('input'))})"


def parse_spec(data: Mapping[str, Any] | JobSpec) -> JobSpec:
    """Validate a spec given as plain data.

    Raises:
        SpecError: the first problem, with its key path (``optimizer.betas2: unknown field``);
            ``SpecError.others`` lists any further ones.
    """
    if isinstance(data, JobSpec):
        return data
    if not isinstance(data, Mapping):
        raise SpecError("", f"a job spec must be a mapping, got {type(data).__name__}")
    try:
        return JobSpec.model_validate(dict(data))
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        first = SpecError(*problems[0])
        others = [f"{p}: {m}" for p, m in problems[1:]]
        if len(others) > MAX_REPORTED_PROBLEMS:
            hidden = len(others) - MAX_REPORTED_PROBLEMS
            others = [*others[:MAX_REPORTED_PROBLEMS], f"... and {hidden} more"]
        first.others = others
        raise first from None
    except SpecError:
        raise


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate a YAML or JSON spec file.

    Raises:
        SpecError: unreadable or unparsable file, or an invalid spec.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError("", f"cannot read spec {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise SpecError("", f"{path} is not valid YAML/JSON: {exc}") from None
    return parse_spec(data if data is not None else {})
