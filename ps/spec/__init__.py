"""The job spec: one validated model of ``shared/JOBSPEC.md``.

YAML, JSON, the gRPC ``JobSpec`` message and Python dicts all go through :func:`parse_spec`.
Unknown keys and bad values are rejected with the key path and the allowed choices or range
(:class:`ps.errors.SpecError`), before anything starts. The optimizer and regularization sections
are checked by :mod:`ps.optim` (one source of truth for hyperparameters).
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_serializer, field_validator, model_validator

from ps.errors import SpecError, clip, did_you_mean
from ps.optim import resolve_optimizer, resolve_regularization
from ps.optim.config import OptimizerConfig, RegularizationConfig, SparseOptimizerConfig
from ps.optim.rows import resolve_sparse_optimizer
from ps.spec.base import MAX_NAME_CHARS, _plain_text, _Strict
from ps.spec.data import BUNDLED_SOURCES, FILE_SUFFIXES, DataSpec
from ps.spec.model import (
    ACTIVATIONS,
    CTR_TYPES,
    INITIALIZERS,
    Activation,
    DenseLayer,
    DropoutLayer,
    EmbeddingSpec,
    Init,
    Layer,
    ModelSpec,
)

__all__ = [
    "ACTIVATIONS",
    "BUNDLED_SOURCES",
    "FILE_SUFFIXES",
    "INITIALIZERS",
    "Activation",
    "DataSpec",
    "DenseLayer",
    "DropoutLayer",
    "EmbeddingSpec",
    "Init",
    "JobSpec",
    "Layer",
    "ModelSpec",
    "load_spec",
    "parse_spec",
]
MAX_REPORTED_PROBLEMS = 10


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
    transport: Literal["auto", "stream", "object_store"] = "auto"
    topk_ratio: Annotated[float, Field(gt=0, le=1)] = 0.01
    divergence_threshold: Annotated[int, Field(ge=1)] = 20
    sparse_staleness: Annotated[int, Field(ge=0, le=10_000)] | None = None
    eval_train_rows: Annotated[int, Field(ge=1, le=10_000_000)] = 2048

    @property
    def table_mode(self) -> tuple[str, int]:
        """(mode, staleness) of the embedding tables: ``sparse_staleness`` when given (0 is
        sync, else bounded), else the dense part's."""
        bound = self.sparse_staleness
        if bound is None:
            return self.mode, self.staleness
        return ("sync", 0) if bound == 0 else ("ssp", bound)


class PSSpec(_Strict):
    shards: Annotated[int, Field(ge=1, le=256)] = 1
    resources: Resources = Resources(num_cpus=0.0)
    max_params: Annotated[int, Field(ge=1, le=10_000_000_000)] = 100_000_000
    max_table_bytes: Annotated[int, Field(ge=2**20, le=2**40)] = 8 * 2**30


class EnsembleSpec(_Strict):
    """A bagging ensemble trained as one job.

    Attributes:
        members: how many copies of the model train (each with its own workers and shards).
        bootstrap: each member trains on a bootstrap sample of the training split (its size,
            drawn with replacement, seeded per member); false: on the whole split.
        combine: ``vote`` (majority of the members' classes) or ``mean`` (averaged
            probabilities, or values for ``mse``).
    """

    members: Annotated[int, Field(ge=2, le=64)] = 5
    bootstrap: bool = True
    combine: Literal["vote", "mean"] = "vote"


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
    optimizer: OptimizerConfig = Field(
        default_factory=lambda: {"name": "adam"}, validate_default=True
    )
    regularization: RegularizationConfig = Field(default_factory=dict, validate_default=True)
    sparse_optimizer: SparseOptimizerConfig = Field(default_factory=dict, validate_default=True)
    training: TrainingSpec = TrainingSpec()
    ps: PSSpec = PSSpec()
    checkpoint: CheckpointSpec = CheckpointSpec()
    ensemble: EnsembleSpec | None = None

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer(cls, v: Any) -> OptimizerConfig:
        if isinstance(v, OptimizerConfig):
            return v
        if not isinstance(v, Mapping):
            raise SpecError("optimizer", f"must be a mapping, got {type(v).__name__}")
        return resolve_optimizer(v, defer_t_max=True)

    @field_validator("regularization", mode="before")
    @classmethod
    def _regularization(cls, v: Any) -> RegularizationConfig:
        if v is not None and not isinstance(v, Mapping | RegularizationConfig):
            raise SpecError("regularization", f"must be a mapping, got {type(v).__name__}")
        return resolve_regularization(v)

    @field_validator("sparse_optimizer", mode="before")
    @classmethod
    def _sparse_optimizer(cls, v: Any) -> SparseOptimizerConfig:
        if v is not None and not isinstance(v, Mapping | SparseOptimizerConfig):
            raise SpecError("sparse_optimizer", f"must be a mapping, got {type(v).__name__}")
        return resolve_sparse_optimizer(v)

    @field_serializer("optimizer", "regularization", "sparse_optimizer")
    def _section(self, value: Any) -> dict[str, Any]:
        return value.to_dict()  # the contract's shape, not the typed value's fields

    @model_validator(mode="after")
    def _ensemble_fits_model(self) -> JobSpec:
        if self.ensemble is None:
            return self
        if self.model.type in CTR_TYPES or self.data.has_categorical:
            raise SpecError("ensemble", "not with embedding tables (categorical features)")
        if self.ensemble.combine == "vote" and self.model.loss == "mse":
            raise SpecError("ensemble.combine", "vote needs classes; use mean with loss mse")
        return self

    def member(self, index: int) -> JobSpec:
        """The spec of ensemble member ``index``: one model, its own seed (initialization,
        batches, dropout), the job's split (see :class:`ps.jobs.ensemble.Member`)."""
        seed = (self.seed * 1_000_003 + 7_919 * (index + 1)) % 2**31
        return self.model_copy(update={"seed": seed, "ensemble": None})

    @model_validator(mode="after")
    def _features_fit_model(self) -> JobSpec:
        model, data = self.model, self.data
        if model.type in CTR_TYPES and not data.has_categorical:
            raise SpecError(
                "model.type",
                f"{model.type!r} needs categorical features: data.categorical (csv / parquet) "
                "or data.source synthetic-ctr",
            )
        if data.has_categorical and model.type == "sequential" and model.module is None:
            raise SpecError(
                "model.type",
                "categorical features need model.type logistic, fm or deepfm, or a user module "
                "(model.module, called as module(ids, numeric))",
            )
        return self

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


def _layer_tags() -> frozenset[str]:
    """The ``type`` tags of the layer union (pydantic puts the tag into an error's location)."""
    union = typing.get_args(Layer)[0]
    return frozenset(
        tag
        for kind in typing.get_args(union)
        for tag in typing.get_args(kind.model_fields["type"].annotation)
    )


LAYER_TAGS = _layer_tags()


def _path(loc: tuple[Any, ...]) -> str:
    """The key path of an error location: without the tag a discriminated union adds after a
    list index (``model.layers.0.conv2d.filters`` is ``model.layers.0.filters``), nor
    validators' names."""
    keys = [
        p
        for i, p in enumerate(loc)
        if p != "function-after" and not (i and isinstance(loc[i - 1], int) and p in LAYER_TAGS)
    ]
    return ".".join(str(p) for p in keys)


def _known_keys(loc: tuple[Any, ...]) -> set[str]:
    """The keys a spec takes where ``loc`` ends (for a "did you mean"): the fields of the
    model reached by following ``loc`` from :class:`JobSpec`, through lists and unions."""
    models: list[Any] = [JobSpec]
    for key in loc[:-1]:
        if isinstance(key, int) or key in LAYER_TAGS:
            continue
        nxt: list[Any] = []
        for model in models:
            info = getattr(model, "model_fields", {}).get(key)
            if info is not None:
                nxt.extend(_models_in(info.annotation))
        models = nxt
    return {name for model in models for name in getattr(model, "model_fields", {})}


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models an annotation names (inside Optional, list, Annotated, unions)."""
    if hasattr(annotation, "model_fields"):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _describe_all(err: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One pydantic error as (path, message) problems: a SpecError raised inside a validator
    brings the other problems of its section with it."""
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, SpecError):
        others = [
            tuple(o.split(": ", 1)) if ": " in o else ("", o) for o in getattr(cause, "others", [])
        ]
        return [(cause.path, cause.message), *others]
    return [_describe(err)]


def _describe(err: Mapping[str, Any]) -> tuple[str, str]:
    ctx = err.get("ctx") or {}
    path = _path(err["loc"])
    if err["type"] == "extra_forbidden":
        return path, f"unknown field{did_you_mean(err['loc'][-1], _known_keys(err['loc']))}"
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
        problems = [p for e in exc.errors() for p in _describe_all(e)]
        first = SpecError(*problems[0])
        others = [f"{p}: {m}" for p, m in problems[1:]]
        if len(others) > MAX_REPORTED_PROBLEMS:
            hidden = len(others) - MAX_REPORTED_PROBLEMS
            others = [*others[:MAX_REPORTED_PROBLEMS], f"... and {hidden} more"]
        first.others = others
        raise first from None


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
