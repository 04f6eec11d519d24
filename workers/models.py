"""Models from the spec — a sequence of layers or the user's own ``nn.Module`` — and their exports.

An exported ``model.pt`` holds the architecture (the spec's ``model:`` section and the input and
output shapes), the weights and buffers, and the input normalization, so :func:`load_model`
rebuilds a module that takes raw features with no other file (a user module's code must be
importable). ``model.pt2`` (:func:`export_program`) is a ``torch.export`` program of the same
model that needs nothing but PyTorch.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ps.errors import SpecError
from ps.spec import ModelSpec
from ps.spec.model import CTR_TYPES
from workers.ensemble import EnsembleNet
from workers.layers import Input, build_layers

FORMAT = "ps-model/3"  # 3: categorical features and embedding tables
READABLE = ("ps-model/1", "ps-model/2", FORMAT)
DRY_RUN_BATCH = 2


def describe(exc: BaseException) -> str:
    """An exception with the last frame of its traceback (where the user's code failed)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})"
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}{where if frames else ''}"


def load_callable(ref: str, field: str) -> Callable:
    """The callable ``package.module:name`` names (imported here: user code runs here).

    Raises:
        SpecError: the module cannot be imported or has no such callable.
    """
    module_name, name = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - an import runs arbitrary code that may raise anything
        raise SpecError(field, f"cannot import {module_name!r}: {describe(exc)}") from None
    target = getattr(module, name, None)
    if not callable(target):
        raise SpecError(field, f"{module_name!r} has no callable {name!r}")
    return target


def build_model(
    spec: ModelSpec, inputs: Input, n_outputs: int, device: str | None = None
) -> nn.Module:
    """The model of ``spec`` for ``inputs``, initialized with torch's global RNG (seed it first).

    Raises:
        SpecError: a layer that does not take its input, outputs that do not fit the data, a user
            module that cannot be built.
    """
    if spec.type in CTR_TYPES:
        from workers.ctr import build_ctr_model

        return build_ctr_model(spec, inputs, n_outputs, device)
    if spec.layers is not None:
        return build_network(spec, inputs, n_outputs, device)
    return build_user_module(spec)


def build_network(
    spec: ModelSpec, inputs: Input, n_outputs: int, device: str | None = None
) -> nn.Sequential:
    """The sequential network of ``spec`` (on the ``meta`` device: shapes only, nothing
    allocated or initialized)."""
    with torch.device(device or "cpu"):
        modules, outputs = build_layers(spec.layers, inputs)
    last, where = outputs[-1], f"model.layers.{len(spec.layers) - 1}"
    if len(last.shape) != 1:
        raise SpecError(
            where, f"the outputs must be flat, got {last.shape} (add flatten or global_avg_pool)"
        )
    if last.shape[0] != n_outputs:
        raise SpecError(
            f"{where}.units",
            f"must be {n_outputs} for this data and loss {spec.loss!r} (got {last.shape[0]})",
        )
    return nn.Sequential(*modules)


def build_user_module(spec: ModelSpec) -> nn.Module:
    """Call the user's ``model.module`` with ``model.kwargs``.

    Raises:
        SpecError: it cannot be imported, raises, returns no ``nn.Module`` or one without
            parameters.
    """
    build = load_callable(spec.module, "model.module")
    try:
        module = build(**spec.kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        raise SpecError("model.module", f"{spec.module}(**kwargs) raised {describe(exc)}") from None
    if not isinstance(module, nn.Module):
        raise SpecError(
            "model.module",
            f"{spec.module} returned a {type(module).__name__}, not a torch.nn.Module",
        )
    if not any(p.requires_grad for p in module.parameters()):
        raise SpecError("model.module", f"{spec.module} returned a module without parameters")
    return module


def example_batch(inputs: Input, rows: int = DRY_RUN_BATCH) -> Tensor:
    """A batch of ``rows`` samples of the data's shape (token 0, or standard normal features)."""
    if inputs.tokens:
        return torch.zeros((rows, *inputs.shape), dtype=torch.long)
    return torch.randn((rows, *inputs.shape), generator=torch.Generator().manual_seed(0))


def example_inputs(inputs: Input, rows: int = DRY_RUN_BATCH) -> tuple[Tensor, ...]:
    """What a model takes for a batch of ``rows``: ``(x,)``, or ``(ids, x)`` with categorical
    fields (ids 0)."""
    x = example_batch(inputs, rows)
    if inputs.fields:
        return torch.zeros((rows, inputs.fields), dtype=torch.long), x
    return (x,)


def dry_run(
    model: nn.Module, inputs: Input, n_outputs: int, loss_kind: str, loss: Callable
) -> None:
    """One forward and backward pass on a small batch: the model takes the data and makes
    outputs the loss can use.

    Raises:
        SpecError: the forward pass fails, the outputs have the wrong shape, or the loss fails.
    """
    example = example_inputs(inputs)
    x = example[-1]
    try:
        out = model(*example)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        shapes = " and ".join(str(tuple(t.shape)) for t in example)
        raise SpecError(
            "model.module", f"the forward pass on a batch of shape {shapes} failed: {describe(exc)}"
        ) from None
    if not isinstance(out, Tensor) or tuple(out.shape) != (len(x), n_outputs):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise SpecError(
            "model.module",
            f"the forward pass must return (batch, {n_outputs}) outputs for this data, got {got}",
        )
    targets = {
        "cross_entropy": torch.zeros(len(x), dtype=torch.long),
        "bce": torch.zeros(len(x)),
    }.get(loss_kind, torch.zeros(len(x), n_outputs))
    try:
        loss(out, targets).backward()
    except Exception as exc:  # noqa: BLE001 - a custom loss may raise anything
        raise SpecError("model.loss_fn", f"the loss failed: {describe(exc)}") from None
    model.zero_grad(set_to_none=True)


class Normalizer(nn.Module):
    """``(x - shift) / scale`` with the training split's statistics (per feature or channel),
    kept as buffers; integer tokens pass unchanged."""

    def __init__(self, shift: Tensor | None, scale: Tensor | None) -> None:
        super().__init__()
        self.identity = shift is None
        if not self.identity:
            self.register_buffer("shift", shift.float())
            self.register_buffer("scale", scale.float())

    def forward(self, x: Tensor) -> Tensor:
        return x if self.identity else (x - self.shift) / self.scale


class TrainedModel(nn.Module):
    """What :func:`load_model` returns: the normalizer, then the network.

    ``classes`` maps an output index to the original label (classification); ``loss`` tells how
    to read the outputs (logits for cross_entropy and bce, values for mse).
    """

    def __init__(
        self, net: nn.Module, normalizer: Normalizer, loss: str, classes: list, inputs: Input
    ) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.net = net
        self.loss = loss
        self.classes = classes
        self.inputs = inputs

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalizer(self.as_input(x)))

    def as_input(self, x) -> Tensor:
        """``x`` (a tensor, a numpy array or nested lists of any numeric dtype) as the network
        takes it: int64 tokens, else float32."""
        if not isinstance(x, Tensor):
            x = torch.as_tensor(np.asarray(x))
        return x.long() if self.inputs.tokens else x.float()

    @torch.no_grad()
    def predict(self, x) -> Tensor:
        """Class indices (cross_entropy), 0/1 (bce) or values (mse) for raw features ``x`` (a
        tensor, a numpy array or a list of rows; any numeric dtype)."""
        return self.decide(self(x))

    def decide(self, out: Tensor) -> Tensor:
        if self.loss == "cross_entropy":
            return out.argmax(-1)
        if self.loss == "bce":
            return (out.squeeze(-1) > 0).long()
        return out


class TrainedTableModel(TrainedModel):
    """A trained model over categorical features (and numeric ones): ``model(ids, x)`` on
    hashed ids, or :meth:`predict` / :meth:`probabilities` on raw rows.

    Attributes:
        fields / numeric: the categorical and numeric column names, in the model's order.
        buckets: the hash space of the ids.
    """

    def __init__(self, net, normalizer, loss, classes, inputs, fields, numeric, buckets) -> None:
        super().__init__(net, normalizer, loss, classes, inputs)
        self.fields, self.numeric, self.buckets = list(fields), list(numeric), int(buckets)

    @classmethod
    def of(cls, model: TrainedModel, fields, numeric, buckets: int) -> TrainedTableModel:
        """``model`` over categorical ``fields`` (hashed into ``buckets``) and ``numeric``
        columns."""
        m = model
        return cls(m.net, m.normalizer, m.loss, m.classes, m.inputs, fields, numeric, buckets)

    def forward(self, ids: Tensor, x: Tensor) -> Tensor:
        return self.net(ids, self.normalizer(x))

    def encode(self, rows) -> tuple[Tensor, Tensor]:
        """Raw rows (a pyarrow Table, a mapping of column -> values, or a list of row mappings)
        to (ids, numeric features), hashed as in training."""
        from workers.categorical import hash_fields, raw_rows_to_columns

        columns = raw_rows_to_columns(rows, self.fields + self.numeric)
        ids = torch.from_numpy(hash_fields(columns, self.fields, self.buckets))
        numeric = [np.asarray(columns[c], dtype=np.float32) for c in self.numeric]
        x = np.stack(numeric, axis=1) if numeric else np.zeros((len(ids), 0), np.float32)
        return ids, torch.from_numpy(x)

    @torch.no_grad()
    def predict(self, rows) -> Tensor:
        """0/1 (bce) or values (mse) for raw rows with the categorical columns."""
        return self.decide(self(*self.encode(rows)))

    @torch.no_grad()
    def probabilities(self, rows) -> Tensor:
        """The predicted probability of the positive class (bce) for raw rows."""
        return torch.sigmoid(self(*self.encode(rows)).squeeze(-1))


def save_model(path: str | Path, spec: ModelSpec, model: TrainedModel, n_outputs: int) -> None:
    """Write ``model.pt``: architecture, weights, buffers and normalization in one file
    (atomically)."""
    path = Path(path)
    tmp = path.with_suffix(".pt.tmp")
    normalizer = model.normalizer
    torch.save(
        {
            "format": FORMAT,
            "model": spec.model_dump(mode="json"),
            "input": {"shape": list(model.inputs.shape), "tokens": model.inputs.tokens},
            "n_outputs": n_outputs,
            "state_dict": model.net.state_dict(),
            "shift": None if normalizer.identity else normalizer.shift,
            "scale": None if normalizer.identity else normalizer.scale,
            "classes": model.classes,
            "categorical": (
                {"fields": model.fields, "numeric": model.numeric, "buckets": model.buckets}
                if isinstance(model, TrainedTableModel)
                else None
            ),
            "ensemble": (
                {"members": len(model.net.members), "combine": model.net.combine}
                if isinstance(model.net, EnsembleNet)
                else None
            ),
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
    if not isinstance(blob, dict) or blob.get("format") not in READABLE:
        raise ValueError(f"{Path(path).name} is not a model exported by this project ({FORMAT})")
    return blob


def exported_input(blob: dict[str, Any]) -> Input:
    """The input an exported model takes (older exports: a table of ``n_inputs`` features)."""
    if "input" in blob:
        fields = len((blob.get("categorical") or {}).get("fields", ()))
        return Input(tuple(blob["input"]["shape"]), bool(blob["input"]["tokens"]), fields)
    return Input((int(blob["n_inputs"]),))


def load_model(path: str | Path) -> TrainedModel:
    """Rebuild an exported ``model.pt`` as an eval-mode module taking raw features.

    Raises:
        ValueError: the file is not an export of this project.
        SpecError: a user module's code cannot be imported here.
    """
    blob = read_export(path)
    spec = ModelSpec.model_validate(blob["model"])
    inputs = exported_input(blob)
    ensemble = blob.get("ensemble")
    if ensemble:
        members = [build_model(spec, inputs, blob["n_outputs"]) for _ in range(ensemble["members"])]
        net = EnsembleNet(members, ensemble["combine"], spec.loss)
    else:
        net = build_model(spec, inputs, blob["n_outputs"])
    net.load_state_dict(blob["state_dict"])
    normalizer = Normalizer(blob["shift"], blob["scale"])
    model = TrainedModel(net, normalizer, spec.loss, blob["classes"], inputs)
    table = blob.get("categorical")
    if table:
        model = TrainedTableModel.of(model, table["fields"], table["numeric"], table["buckets"])
    return model.eval()


def _own_storage(model: TrainedModel) -> TrainedModel:
    """A copy whose every parameter and buffer has a storage of its own: a trained network's
    tensors are views into one flat state, which the pt2 writer cannot always store."""
    import copy

    model = copy.deepcopy(model)
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                module._parameters[name] = nn.Parameter(p.detach().clone(), p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = b.clone()
    return model


def export_program(model: TrainedModel, path: str | Path) -> Path:
    """Write ``model.pt2``: a ``torch.export`` program of the normalizer and the network (eval
    mode, any batch size) that loads with plain PyTorch (``torch.export.load(path).module()``)
    and returns the outputs (logits for classification, values for mse). A model over
    categorical features takes ``(ids, x)``: the hashed ids and the raw numeric features; its
    tables travel inside (the trained rows; other ids read as zeros)."""
    path = Path(path)
    model = _own_storage(model).eval()
    example = example_inputs(model.inputs)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    shapes = tuple({0: batch} for _ in example)
    program = torch.export.export(model, example, dynamic_shapes=shapes)
    tmp = path.with_name(f".{path.stem}.partial.pt2")
    torch.export.save(program, tmp)
    tmp.replace(path)
    return path
