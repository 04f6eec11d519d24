"""The spec's layers as PyTorch modules, with their shapes inferred layer by layer.

Shapes are per sample (no batch axis): a table row is ``(features,)``, an image ``(channels,
height, width)``, a sequence ``(steps,)`` of integer tokens or ``(steps, features)``. Every layer
knows which input shapes it takes and what it makes of them, so a mismatch is reported before
anything is built, naming the layer and both shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ps.errors import SpecError
from ps.spec.model import (
    Activation,
    BatchNormLayer,
    ConvLayer,
    DenseLayer,
    DropoutLayer,
    EmbeddingLayer,
    Init,
    LayerNormLayer,
    PoolLayer,
    RecurrentLayer,
    ShapeLayer,
)

Shape = tuple[int, ...]
BIAS_INITS = ("zeros", "normal", "uniform", "truncated_normal")


@dataclass(frozen=True)
class Input:
    """What flows between layers: a per-sample shape, and whether it holds integer tokens.

    ``fields`` > 0: the samples also have that many categorical ids (hashed), and a model takes
    them first: ``model(ids, numeric)`` with ``numeric`` of ``shape``.
    """

    shape: Shape
    tokens: bool = False
    fields: int = 0

    def __str__(self) -> str:
        ids = f"{self.fields} categorical ids + " if self.fields else ""
        return f"{ids}{'tokens ' if self.tokens else ''}{self.shape}"


class Maxout(nn.Module):
    """Max over ``pieces`` consecutive linear units (Goodfellow et al., 2013)."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (-1, self.pieces)).amax(-1)


class Abs(nn.Module):
    """Absolute-value rectification, ``|x|``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.abs()


class StepsLast(nn.Module):
    """Runs a channels-first module (Conv1d, pooling, BatchNorm1d) on (batch, steps, features)."""

    def __init__(self, *inner: nn.Module) -> None:
        super().__init__()
        self.inner = nn.Sequential(*inner)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x.transpose(1, 2)).transpose(1, 2)


class GlobalAvgPool(nn.Module):
    """The mean over every axis but the batch and the channels (images: dims 2, 3; sequences:
    the steps, dim 1)."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=self.dims)


class Recurrent(nn.Module):
    """An LSTM or GRU over (batch, steps, features); the last step's output (both directions'
    final states), or every step's."""

    def __init__(self, layer: RecurrentLayer, features: int) -> None:
        super().__init__()
        cls = nn.LSTM if layer.type == "lstm" else nn.GRU
        self.rnn = cls(
            features,
            layer.units,
            num_layers=layer.layers,
            batch_first=True,
            bidirectional=layer.bidirectional,
        )
        self.return_sequences = layer.return_sequences
        self.directions = 2 if layer.bidirectional else 1

    def forward(self, x: Tensor) -> Tensor:
        out, state = self.rnn(x)
        if self.return_sequences:
            return out
        h = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        return torch.cat(list(h[-self.directions :]), dim=-1)


def make_activation(
    act: Activation, units: int, rank: int, where: str, layer: str = "dense"
) -> nn.Module | None:
    """The module for ``act`` after a ``layer`` with ``units`` outputs (a dense layer's of rank
    ``rank``; a conv layer's channels on axis 1); None for linear."""
    kind = act.type
    if kind in ("prelu", "maxout") and rank != 1 and layer == "dense":
        raise SpecError(where, f"activation {kind!r} needs a flat input to its dense layer")
    if kind == "maxout" and layer != "dense":
        raise SpecError(where, "activation 'maxout' works on dense layers only")
    if kind == "linear":
        return None
    if kind == "leaky_relu":
        return nn.LeakyReLU(act.negative_slope)
    if kind == "prelu":
        return nn.PReLU(units)
    if kind == "maxout":
        return Maxout(act.pieces)
    return {
        "relu": nn.ReLU,
        "abs": Abs,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "hard_tanh": nn.Hardtanh,
        "softplus": nn.Softplus,
    }[kind]()


def initialize_(t: Tensor, init: Init, where: str = "model.layers") -> None:
    """Fill ``t`` in place with ``init`` (glorot/he use the fans of a weight of rank >= 2)."""
    if t.is_meta:
        return
    with torch.no_grad():
        kind = init.type
        if kind == "zeros":
            t.zero_()
        elif kind == "normal":
            t.normal_(init.mean, init.std)
        elif kind == "uniform":
            t.uniform_(init.low, init.high)
        elif kind == "truncated_normal":
            nn.init.trunc_normal_(
                t, init.mean, init.std, init.mean - 2 * init.std, init.mean + 2 * init.std
            )
        elif t.dim() < 2:
            raise SpecError(where, f"initializer {kind!r} needs a weight matrix, not a bias")
        else:
            {
                "glorot_uniform": nn.init.xavier_uniform_,
                "glorot_normal": nn.init.xavier_normal_,
                "he_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
                "he_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
                "orthogonal": nn.init.orthogonal_,
            }[kind](t)


def _weights(module: nn.Module, layer: DenseLayer | ConvLayer, where: str) -> None:
    if layer.bias and layer.bias_init.type not in BIAS_INITS:
        raise SpecError(
            f"{where}.bias_init.type",
            f"{layer.bias_init.type!r} needs a matrix; use zeros, normal, uniform or "
            "truncated_normal for biases",
        )
    initialize_(module.weight, layer.init, f"{where}.init")
    if layer.bias:
        initialize_(module.bias, layer.bias_init, f"{where}.bias_init")


def _mismatch(where: str, kind: str, expected: str, got: Input) -> SpecError:
    return SpecError(where, f"{kind} expects {expected}, got {got}")


def _floats(x: Input, where: str, kind: str) -> None:
    if x.tokens:
        raise _mismatch(where, kind, "float features (start with an embedding layer)", x)


def _sliding(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# -- one function per layer kind: (layer, input, where) -> (module, output) ---------------------
def _dense(layer: DenseLayer, x: Input, where: str):
    _floats(x, where, "dense")
    pieces = layer.activation.pieces if layer.activation.type == "maxout" else 1
    linear = nn.Linear(x.shape[-1], layer.units * pieces, bias=layer.bias)
    _weights(linear, layer, where)
    act = make_activation(layer.activation, layer.units, len(x.shape), where)
    return [linear] + ([act] if act is not None else []), Input((*x.shape[:-1], layer.units))


def _dropout(layer: DropoutLayer, x: Input, where: str):
    _floats(x, where, "dropout")
    return nn.Dropout(layer.rate), x


def _sizes(value: int | tuple[int, int], axes: int, where: str) -> tuple[int, ...]:
    """One size per spatial axis (a single number stands for all)."""
    if isinstance(value, int):
        return (value,) * axes
    if len(value) != axes:
        raise SpecError(where, f"give {axes} size(s) here, got {list(value)}")
    return tuple(value)


def _spatial(layer, x: Input, where: str) -> tuple[bool, int, Shape]:
    """(2-d?, channels, spatial shape) of a conv or pooling layer's input, or the mismatch."""
    two_d = layer.type.endswith("2d")
    if len(x.shape) != (3 if two_d else 2):
        expected = "an image (channels, height, width)" if two_d else "(steps, features)"
        raise _mismatch(where, layer.type, expected, x)
    if two_d:
        return True, x.shape[0], x.shape[1:]
    return False, x.shape[1], x.shape[:1]


def _conv(layer: ConvLayer, x: Input, where: str):
    _floats(x, where, layer.type)
    two_d, channels, spatial = _spatial(layer, x, where)
    if channels % layer.groups or layer.filters % layer.groups:
        raise SpecError(
            f"{where}.groups",
            f"{layer.groups} groups must divide the {channels} input channels and the "
            f"{layer.filters} filters",
        )
    axes = len(spatial)
    kernel = _sizes(layer.kernel_size, axes, f"{where}.kernel_size")
    stride = _sizes(layer.stride, axes, f"{where}.stride")
    dilation = _sizes(layer.dilation, axes, f"{where}.dilation")
    if layer.padding == "same":
        if any(s != 1 for s in stride):
            raise SpecError(f"{where}.padding", "'same' needs stride 1")
        padding, out = "same", spatial
    else:
        pad = 0 if layer.padding == "valid" else layer.padding
        padding = (pad,) * axes
        out = tuple(
            _sliding(n, k, s, pad, d)
            for n, k, s, d in zip(spatial, kernel, stride, dilation, strict=True)
        )
    if any(o < 1 for o in out):
        raise _mismatch(where, layer.type, f"an input of at least the kernel {kernel}", x)
    conv = (nn.Conv2d if two_d else nn.Conv1d)(
        channels,
        layer.filters,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=layer.groups,
        bias=layer.bias,
    )
    _weights(conv, layer, where)
    act = make_activation(layer.activation, layer.filters, axes + 1, where, layer.type)
    parts = [conv] + ([act] if act is not None else [])
    if two_d:
        return parts, Input((layer.filters, *out))
    return StepsLast(*parts), Input((out[0], layer.filters))


def _pool(layer: PoolLayer, x: Input, where: str):
    _floats(x, where, layer.type)
    two_d, channels, spatial = _spatial(layer, x, where)
    size = _sizes(layer.pool_size, len(spatial), f"{where}.pool_size")
    stride = size if layer.stride is None else _sizes(layer.stride, len(spatial), f"{where}.stride")
    out = tuple(_sliding(n, k, s, 0) for n, k, s in zip(spatial, size, stride, strict=True))
    if any(o < 1 for o in out):
        raise _mismatch(where, layer.type, f"an input of at least the pool size {size}", x)
    kind = "Max" if layer.type.startswith("max") else "Avg"
    pool = getattr(nn, f"{kind}Pool{len(spatial)}d")(size, stride)
    if two_d:
        return pool, Input((channels, *out))
    return StepsLast(pool), Input((out[0], channels))


def _reshape(layer: ShapeLayer, x: Input, where: str):
    if layer.type == "flatten":
        return nn.Flatten(), Input((math.prod(x.shape),), x.tokens)
    _floats(x, where, "global_avg_pool")
    if len(x.shape) == 3:
        return GlobalAvgPool((2, 3)), Input((x.shape[0],))
    if len(x.shape) == 2:
        return GlobalAvgPool((1,)), Input((x.shape[1],))
    raise _mismatch(where, "global_avg_pool", "an image or (steps, features)", x)


def _batch_norm(layer: BatchNormLayer, x: Input, where: str):
    _floats(x, where, "batch_norm")
    kwargs = {"eps": layer.eps, "momentum": layer.momentum}
    if len(x.shape) == 1:
        return nn.BatchNorm1d(x.shape[0], **kwargs), x
    if len(x.shape) == 2:
        return StepsLast(nn.BatchNorm1d(x.shape[1], **kwargs)), x
    if len(x.shape) == 3:
        return nn.BatchNorm2d(x.shape[0], **kwargs), x
    raise _mismatch(where, "batch_norm", "features, (steps, features) or an image", x)


def _layer_norm(layer: LayerNormLayer, x: Input, where: str):
    _floats(x, where, "layer_norm")
    shape = x.shape if len(x.shape) == 3 else x.shape[-1:]
    return nn.LayerNorm(shape, eps=layer.eps), x


def _embedding(layer: EmbeddingLayer, x: Input, where: str):
    if not x.tokens or len(x.shape) != 1:
        raise _mismatch(where, "embedding", "integer tokens (steps,)", x)
    return nn.Embedding(layer.input_dim, layer.output_dim), Input((x.shape[0], layer.output_dim))


def _recurrent(layer: RecurrentLayer, x: Input, where: str):
    _floats(x, where, layer.type)
    if len(x.shape) != 2:
        raise _mismatch(where, layer.type, "(steps, features)", x)
    units = layer.units * (2 if layer.bidirectional else 1)
    out = (x.shape[0], units) if layer.return_sequences else (units,)
    return Recurrent(layer, x.shape[1]), Input(out)


BUILDERS: dict[type, Callable] = {
    DenseLayer: _dense,
    DropoutLayer: _dropout,
    ConvLayer: _conv,
    PoolLayer: _pool,
    ShapeLayer: _reshape,
    BatchNormLayer: _batch_norm,
    LayerNormLayer: _layer_norm,
    EmbeddingLayer: _embedding,
    RecurrentLayer: _recurrent,
}


def build_layers(layers: list, x: Input) -> tuple[list[nn.Module], list[Input]]:
    """The modules of ``layers`` for input ``x`` (a layer with an activation adds two, as
    before: state-dict keys of older exports stay valid) and the output of each layer.

    Raises:
        SpecError: ``model.layers.<i>``: the layer does not take its input (both shapes named).
    """
    modules, outputs = [], []
    for i, layer in enumerate(layers):
        made, x = BUILDERS[type(layer)](layer, x, f"model.layers.{i}")
        modules.extend(made if isinstance(made, list) else [made])
        outputs.append(x)
    return modules, outputs
