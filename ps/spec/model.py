"""The ``model:`` section of a job spec: layers, activations, initializers."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ps.errors import SpecError, clip
from ps.spec.base import MAX_INIT_MAGNITUDE, MAX_LAYERS, MAX_PATH_CHARS, _plain_text, _Strict

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


def _pair(v: Any) -> Any:
    """``3`` or ``[3, 3]`` (a list in YAML/JSON) for a size per spatial axis."""
    return tuple(v) if isinstance(v, list) else v


Size = Annotated[int, Field(ge=1, le=1024)]
Pair = Size | tuple[Size, Size]


class DenseLayer(_Strict):
    """A fully connected layer on the last axis."""

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


class ConvLayer(_Strict):
    """``conv2d`` on images (C, H, W) or ``conv1d`` on sequences (steps, features)."""

    type: Literal["conv1d", "conv2d"]
    filters: Annotated[int, Field(ge=1, le=65_536)]
    kernel_size: Pair
    stride: Pair = 1
    padding: Literal["valid", "same"] | Annotated[int, Field(ge=0, le=1024)] = "valid"
    dilation: Pair = 1
    groups: Annotated[int, Field(ge=1, le=65_536)] = 1
    activation: Activation = Activation()
    init: Init = Init()
    bias_init: Init = Init(type="zeros")
    bias: bool = True

    _name_activation = field_validator("activation", mode="before")(_named)
    _name_init = field_validator("init", "bias_init", mode="before")(_named)
    _pairs = field_validator("kernel_size", "stride", "dilation", mode="before")(_pair)


class PoolLayer(_Strict):
    """Max or average pooling; ``stride`` defaults to ``pool_size``."""

    type: Literal["max_pool1d", "avg_pool1d", "max_pool2d", "avg_pool2d"]
    pool_size: Pair = 2
    stride: Pair | None = None

    _pairs = field_validator("pool_size", "stride", mode="before")(_pair)


class ShapeLayer(_Strict):
    """``flatten`` (to one axis) or ``global_avg_pool`` (the mean over every spatial/step axis)."""

    type: Literal["flatten", "global_avg_pool"]


class BatchNormLayer(_Strict):
    """Batch normalization over the channels (images) or features (tables, sequences)."""

    type: Literal["batch_norm"]
    momentum: Annotated[float, Field(gt=0, le=1)] = 0.1
    eps: Annotated[float, Field(gt=0, le=1)] = 1e-5


class LayerNormLayer(_Strict):
    """Layer normalization over the last axis (images: over channels, height and width)."""

    type: Literal["layer_norm"]
    eps: Annotated[float, Field(gt=0, le=1)] = 1e-5


class EmbeddingLayer(_Strict):
    """Integer tokens (steps,) to vectors (steps, output_dim)."""

    type: Literal["embedding"]
    input_dim: Annotated[int, Field(ge=1, le=100_000_000)]
    output_dim: Annotated[int, Field(ge=1, le=65_536)]


class RecurrentLayer(_Strict):
    """``lstm`` or ``gru`` over (steps, features): the last step's output, or every step's."""

    type: Literal["lstm", "gru"]
    units: Annotated[int, Field(ge=1, le=65_536)]
    layers: Annotated[int, Field(ge=1, le=16)] = 1
    bidirectional: bool = False
    return_sequences: bool = False


Layer = Annotated[
    DenseLayer
    | DropoutLayer
    | ConvLayer
    | PoolLayer
    | ShapeLayer
    | BatchNormLayer
    | LayerNormLayer
    | EmbeddingLayer
    | RecurrentLayer,
    Field(discriminator="type"),
]
LOSSES = ("cross_entropy", "mse", "bce")
MAX_KWARGS_CHARS = 65_536
MODEL_TYPES = ("sequential", "logistic", "fm", "deepfm")
CTR_TYPES = ("logistic", "fm", "deepfm")
MAX_BUCKETS = 2**40
MAX_ADMIT_AFTER = 65_535  # the frequency sketch's 16-bit counters


class EmbeddingSpec(_Strict):
    """The embedding table of a built-in model over categorical features (and the hashing of
    categorical columns for user modules).

    Attributes:
        dim: floats per id (factorization-machine factors; ``logistic`` keeps one weight).
        buckets: rows of the table: every (column, value) is hashed to one of them. A bound,
            not an allocation: the shards keep only the rows training touches.
        init / scale: initial rows — ``normal`` with std ``scale``, ``uniform`` in
            ``[-scale, scale)``, or ``zeros``.
        admit_after: an id gets a row once seen this many times (1: on its first update).
        max_rows / evict: the rows the table keeps across shards, and which go beyond it
            (``lru``: least recently updated; ``lfu``: least often). None: no bound.
        expire_after_steps: a row not updated for this many updates is dropped. None: never.
    """

    dim: Annotated[int, Field(ge=1, le=1024)] = 8
    buckets: Annotated[int, Field(ge=1, le=MAX_BUCKETS)] = 2**20
    init: Literal["normal", "uniform", "zeros"] = "normal"
    scale: Annotated[float, Field(ge=0, le=MAX_INIT_MAGNITUDE)] = 0.01
    admit_after: Annotated[int, Field(ge=1, le=MAX_ADMIT_AFTER)] = 1
    max_rows: Annotated[int, Field(ge=1, le=MAX_BUCKETS)] | None = None
    evict: Literal["lru", "lfu"] = "lru"
    expire_after_steps: Annotated[int, Field(ge=1, le=2**40)] | None = None


class ModelSpec(_Strict):
    """A sequential network (``layers``), the user's own module (``module``), or a built-in
    model over categorical features (``type: logistic | fm | deepfm``, with ``embedding``;
    ``layers`` is then DeepFM's deep tower).

    The input shape comes from the data; the last layer's units are the outputs.
    """

    type: Literal[MODEL_TYPES] = "sequential"  # type: ignore[valid-type]
    embedding: EmbeddingSpec | None = None
    layers: Annotated[list[Layer], Field(min_length=1, max_length=MAX_LAYERS)] | None = None
    module: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    code: str | None = None
    loss: Literal[LOSSES] = "cross_entropy"  # type: ignore[valid-type]
    loss_fn: str | None = None
    init_from: str | None = None

    @field_validator("init_from", "code")
    @classmethod
    def _path_text(cls, v: str | None) -> str | None:
        return v if v is None else _plain_text(v, MAX_PATH_CHARS)

    @field_validator("module", "loss_fn")
    @classmethod
    def _callable_name(cls, v: str | None) -> str | None:
        if v is not None and not CALLABLE.fullmatch(v):
            raise ValueError(
                f"{clip(v)} is not 'package.module:callable' (letters, digits and '_')"
            )
        return v

    @field_validator("kwargs")
    @classmethod
    def _plain_kwargs(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_json(v, "model.kwargs")
        if len(json.dumps(v)) > MAX_KWARGS_CHARS:
            raise ValueError(f"is longer than {MAX_KWARGS_CHARS:,} characters as JSON")
        return v

    @model_validator(mode="before")
    @classmethod
    def _ctr_loss(cls, data: Any) -> Any:
        # Click-through models predict a probability: bce unless the spec says otherwise.
        if isinstance(data, dict) and data.get("type") in CTR_TYPES and "loss" not in data:
            return {**data, "loss": "bce"}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> ModelSpec:
        if self.type in CTR_TYPES:
            return self._check_ctr()
        if self.embedding is not None and self.module is None:
            raise SpecError(
                "model.embedding", "only with model.type logistic, fm or deepfm, or model.module"
            )
        if (self.layers is None) == (self.module is None):
            raise SpecError("model", "give either layers (a sequential network) or module")
        if self.module is None:
            if self.kwargs:
                raise SpecError("model.kwargs", "only with model.module (a user module)")
            if self.code and not self.loss_fn:
                raise SpecError("model.code", "only with model.module or model.loss_fn")
            if self.layers[-1].type != "dense":
                raise SpecError(
                    f"model.layers.{len(self.layers) - 1}.type",
                    "the last layer must be dense (it produces the outputs)",
                )
        return self

    def _check_ctr(self) -> ModelSpec:
        if self.module is not None:
            raise SpecError("model.module", f"not with model.type {self.type!r} (a built-in model)")
        if self.type == "deepfm" and self.layers is None:
            raise SpecError("model.layers", "deepfm needs layers: its deep tower")
        if self.type != "deepfm" and self.layers is not None:
            raise SpecError("model.layers", f"model.type {self.type!r} has no layers")
        if self.layers is not None:
            last = len(self.layers) - 1
            if self.layers[last].type != "dense" or self.layers[last].units != 1:
                raise SpecError(
                    f"model.layers.{last}",
                    "the deep tower must end in a dense layer of 1 unit (its logit)",
                )
        if self.loss == "cross_entropy":
            raise SpecError(
                "model.loss", f"model.type {self.type!r} makes one output: use bce or mse"
            )
        if self.kwargs or self.code:
            raise SpecError("model.kwargs" if self.kwargs else "model.code", "only with module")
        return self

    @property
    def table(self) -> EmbeddingSpec:
        """The embedding settings in force (the defaults when none are given)."""
        return self.embedding or EmbeddingSpec()

    @property
    def user_code(self) -> bool:
        """Whether building this model runs the user's code."""
        return self.module is not None or self.loss_fn is not None


CALLABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def _check_json(value: Any, path: str, depth: int = 0) -> None:
    """kwargs are plain JSON: strings, finite numbers, booleans, null, lists and mappings."""
    if depth > 8:
        raise SpecError(path, "nested more than 8 levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(path, f"must be finite (got {value})")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpecError(path, f"keys must be strings (got {clip(key)})")
            _check_json(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{path}.{i}", depth + 1)
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise SpecError(path, f"must be plain data, not {type(value).__name__}")
