"""Layer specs to ``torch.nn.Module``; activations; initializers; export and ``load_model``.

An exported ``model.pt`` holds the architecture (the spec's ``model:`` section and the input and
output sizes), the weights and the input normalization in one file, so :func:`load_model`
rebuilds a module that takes raw features with no other file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ps.errors import SpecError
from ps.spec import Activation, DenseLayer, DropoutLayer, Init, ModelSpec

FORMAT = "ps-model/1"


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


def make_activation(act: Activation, units: int) -> nn.Module | None:
    """The module for ``act`` after a dense layer with ``units`` outputs (None for linear)."""
    kind = act.type
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


def initialize_(t: Tensor, init: Init, gain_for: str = "linear") -> None:
    """Fill ``t`` in place with ``init`` (glorot/he use the fan of a (out, in) weight)."""
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
            raise SpecError(
                "model.layers", f"initializer {kind!r} needs a weight matrix, not a bias"
            )
        elif kind == "glorot_uniform":
            nn.init.xavier_uniform_(t)
        elif kind == "glorot_normal":
            nn.init.xavier_normal_(t)
        elif kind == "he_uniform":
            nn.init.kaiming_uniform_(t, nonlinearity="relu")
        elif kind == "he_normal":
            nn.init.kaiming_normal_(t, nonlinearity="relu")
        elif kind == "orthogonal":
            nn.init.orthogonal_(t)
        else:  # pragma: no cover - the spec's Literal rules this out
            raise ValueError(f"unknown initializer {kind!r}")


def network_shapes(spec: ModelSpec, n_inputs: int, n_outputs: int) -> dict[str, torch.Size]:
    """The parameter and buffer shapes of ``spec``'s network, computed without allocating them
    (the network is built on PyTorch's ``meta`` device): a 10¹²-parameter spec costs nothing.

    Raises:
        SpecError: as :func:`build_network`.
    """
    net = build_network(spec, n_inputs, n_outputs, device="meta")
    return {name: t.shape for name, t in net.state_dict().items()}


def build_network(
    spec: ModelSpec, n_inputs: int, n_outputs: int, device: str | None = None
) -> nn.Sequential:
    """The sequential network of ``spec`` for ``n_inputs`` features, initialized.

    Uses torch's global RNG for initialization: seed it first for reproducible weights. On the
    ``meta`` device nothing is allocated and nothing initialized (shapes only).

    Raises:
        SpecError: the last dense layer's units differ from ``n_outputs``, or a bias
            initializer that needs a matrix.
    """
    last = spec.layers[-1]
    if last.units != n_outputs:
        raise SpecError(
            f"model.layers.{len(spec.layers) - 1}.units",
            f"must be {n_outputs} for this data and loss {spec.loss!r} (got {last.units})",
        )
    modules: list[nn.Module] = []
    width = n_inputs
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, DropoutLayer):
            modules.append(nn.Dropout(layer.rate))
            continue
        assert isinstance(layer, DenseLayer)
        out = layer.units * (layer.activation.pieces if layer.activation.type == "maxout" else 1)
        if layer.bias_init.type not in ("zeros", "normal", "uniform", "truncated_normal"):
            raise SpecError(
                f"model.layers.{i}.bias_init.type",
                f"{layer.bias_init.type!r} needs a matrix; use zeros, normal, uniform or "
                "truncated_normal for biases",
            )
        linear = nn.Linear(width, out, bias=layer.bias, device=device)
        if device != "meta":
            initialize_(linear.weight, layer.init)
            if layer.bias:
                initialize_(linear.bias, layer.bias_init)
        modules.append(linear)
        with torch.device(device or "cpu"):
            act = make_activation(layer.activation, layer.units)
        if act is not None:
            modules.append(act)
        width = layer.units
    return nn.Sequential(*modules)


class Normalizer(nn.Module):
    """``(x - shift) / scale`` with the training split's statistics, kept as buffers."""

    def __init__(self, shift: Tensor, scale: Tensor) -> None:
        super().__init__()
        self.register_buffer("shift", shift.float())
        self.register_buffer("scale", scale.float())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale


class TrainedModel(nn.Module):
    """What :func:`load_model` returns: the normalizer, then the network.

    ``classes`` maps an output index to the original label (classification); ``loss`` tells how
    to read the outputs (logits for cross_entropy and bce, values for mse).
    """

    def __init__(
        self, net: nn.Sequential, normalizer: Normalizer, loss: str, classes: list
    ) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.net = net
        self.loss = loss
        self.classes = classes

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalizer(x))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Class indices (cross_entropy), 0/1 (bce) or values (mse) for raw features ``x``."""
        out = self(x.float())
        if self.loss == "cross_entropy":
            return out.argmax(-1)
        if self.loss == "bce":
            return (out.squeeze(-1) > 0).long()
        return out


def save_model(
    path: str | Path,
    spec: ModelSpec,
    net: nn.Sequential,
    n_inputs: int,
    n_outputs: int,
    shift: Tensor,
    scale: Tensor,
    classes: list,
) -> None:
    """Write ``model.pt``: architecture, weights and normalization in one file (atomically)."""
    path = Path(path)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(
        {
            "format": FORMAT,
            "model": spec.model_dump(mode="json"),
            "n_inputs": n_inputs,
            "n_outputs": n_outputs,
            "state_dict": net.state_dict(),
            "shift": shift,
            "scale": scale,
            "classes": classes,
        },
        tmp,
    )
    tmp.replace(path)


def read_export(path: str | Path) -> dict[str, Any]:
    """The raw content of an exported model file, checked for its format."""
    try:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - garbage, empty or foreign files fail in many ways
        raise ValueError(
            f"{Path(path).name} is not a model exported by this project ({FORMAT}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{Path(path).name} is not a model exported by this project ({FORMAT})")
    return blob


def load_model(path: str | Path) -> TrainedModel:
    """Rebuild an exported ``model.pt`` as an eval-mode module taking raw features.

    Raises:
        ValueError: the file is not an export of this project.
    """
    blob = read_export(path)
    spec = ModelSpec.model_validate(blob["model"])
    net = build_network(spec, blob["n_inputs"], blob["n_outputs"])
    net.load_state_dict(blob["state_dict"])
    model = TrainedModel(net, Normalizer(blob["shift"], blob["scale"]), spec.loss, blob["classes"])
    return model.eval()
