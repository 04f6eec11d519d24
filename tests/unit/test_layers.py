"""Layers beyond dense: shapes inferred layer by layer (and equal to what the modules make),
mismatches named before anything is built, and exports that need only PyTorch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ps.errors import SpecError
from ps.spec import ModelSpec
from workers.flat import FlatModel
from workers.layers import Input, build_layers
from workers.models import (
    Normalizer,
    TrainedModel,
    build_network,
    example_batch,
    export_program,
    load_model,
    save_model,
)


def _spec(*layers, loss="cross_entropy"):
    return ModelSpec.model_validate({"layers": list(layers), "loss": loss})


CASES = {
    "cnn": (
        Input((1, 8, 8)),
        [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same"},
            {"type": "batch_norm"},
            {"type": "max_pool2d", "pool_size": 2},
            {"type": "conv2d", "filters": 6, "kernel_size": [3, 1], "stride": [1, 2]},
            {"type": "avg_pool2d", "pool_size": [2, 1]},
            {"type": "layer_norm"},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        [(4, 8, 8), (4, 8, 8), (4, 4, 4), (6, 2, 2), (6, 1, 2), (6, 1, 2), (12,), (10,)],
    ),
    "sequence": (
        Input((12, 3)),
        [
            {"type": "conv1d", "filters": 5, "kernel_size": 3, "padding": 1, "activation": "prelu"},
            {"type": "batch_norm"},
            {"type": "max_pool1d", "pool_size": 2},
            {"type": "gru", "units": 4, "return_sequences": True, "bidirectional": True},
            {"type": "lstm", "units": 6, "layers": 2},
            {"type": "dense", "units": 2},
        ],
        [(12, 5), (12, 5), (6, 5), (6, 8), (6,), (2,)],
    ),
    "tokens": (
        Input((7,), tokens=True),
        [
            {"type": "embedding", "input_dim": 20, "output_dim": 4},
            {"type": "avg_pool1d", "pool_size": 2, "stride": 1},
            {"type": "global_avg_pool"},
            {"type": "dropout", "rate": 0.1},
            {"type": "dense", "units": 3},
        ],
        [(7, 4), (6, 4), (4,), (4,), (3,)],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_inferred_shapes_are_the_shapes_the_modules_make(case):
    inputs, layers, shapes = CASES[case]
    spec = _spec(*layers)
    _, outputs = build_layers(spec.layers, inputs)
    assert [o.shape for o in outputs] == shapes
    torch.manual_seed(0)
    net = build_network(spec, inputs, shapes[-1][0])
    x = example_batch(inputs, rows=5)
    assert net(x).shape == (5, *shapes[-1])
    # One backward pass through the flat parameters reaches every parameter.
    flat = FlatModel(net)
    flat.zero_grad()
    net(x).sum().backward()
    assert torch.count_nonzero(flat.gradient()[: flat.n_params]) > 0


MISMATCHES = [
    (
        Input((64,)),
        [{"type": "conv2d", "filters": 2, "kernel_size": 3}],
        "model.layers.0",
        "conv2d expects an image (channels, height, width), got (64,)",
    ),
    (
        Input((1, 8, 8)),
        [{"type": "flatten"}, {"type": "lstm", "units": 3}],
        "model.layers.1",
        "lstm expects (steps, features), got (64,)",
    ),
    (
        Input((1, 4, 4)),
        [{"type": "conv2d", "filters": 2, "kernel_size": 5}],
        "model.layers.0",
        "an input of at least the kernel (5, 5), got (1, 4, 4)",
    ),
    (
        Input((5,), tokens=True),
        [{"type": "dense", "units": 2}],
        "model.layers.0",
        "start with an embedding layer",
    ),
    (
        Input((5, 2)),
        [{"type": "embedding", "input_dim": 4, "output_dim": 2}],
        "model.layers.0",
        "embedding expects integer tokens (steps,), got (5, 2)",
    ),
    (
        Input((3, 8, 8)),
        [{"type": "conv2d", "filters": 4, "kernel_size": 3, "groups": 2}],
        "model.layers.0.groups",
        "must divide the 3 input channels",
    ),
    (
        Input((8, 2)),
        [{"type": "conv1d", "filters": 2, "kernel_size": [3, 3]}],
        "model.layers.0.kernel_size",
        "give 1 size(s) here",
    ),
]


@pytest.mark.parametrize(("inputs", "layers", "path", "text"), MISMATCHES)
def test_a_mismatch_names_the_layer_and_both_shapes(inputs, layers, path, text):
    with pytest.raises(SpecError) as info:
        build_layers(_spec(*layers, {"type": "dense", "units": 2}).layers, inputs)
    assert info.value.path == path and text in info.value.message


def test_outputs_must_be_flat_and_fit_the_data():
    spec = _spec({"type": "conv2d", "filters": 2, "kernel_size": 1}, {"type": "dense", "units": 3})
    with pytest.raises(SpecError, match=r"model.layers.1: the outputs must be flat"):
        build_network(spec, Input((1, 4, 4)), 3)


def test_cnn_with_batch_norm_round_trips_and_exports_to_plain_torch(tmp_path):
    inputs, layers, shapes = CASES["cnn"]
    spec = _spec(*layers)
    torch.manual_seed(0)
    net = build_network(spec, inputs, 10)
    net.train()
    net(example_batch(inputs, rows=8))  # move the running statistics off their start
    shift, scale = torch.full((1, 1, 1), 0.5), torch.full((1, 1, 1), 2.0)
    model = TrainedModel(net, Normalizer(shift, scale), "cross_entropy", list(range(10)), inputs)
    save_model(tmp_path / "model.pt", spec, model, 10)
    export_program(model, tmp_path / "model.pt2")
    loaded = load_model(tmp_path / "model.pt")
    x = torch.rand(6, 1, 8, 8) * 16
    torch.testing.assert_close(loaded(x), model.eval()(x))
    torch.save(x, tmp_path / "x.pt")
    # A fresh process with only torch: none of this project's code is imported.
    script = (
        "import sys, torch\n"
        f"program = torch.export.load({str(tmp_path / 'model.pt2')!r}).module()\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        "print(program(x).argmax(-1).tolist())\n"
        "assert not any(m.split('.')[0] in ('ps', 'workers') for m in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert out.stdout.strip() == str(loaded.predict(x).tolist())
