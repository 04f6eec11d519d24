"""Every activation and initializer builds, trains a step and round-trips through load_model."""

from __future__ import annotations

import pytest
import torch

from ps.errors import SpecError
from ps.optim import build
from ps.spec import ACTIVATIONS, INITIALIZERS, ModelSpec
from workers.evaluation import loss_fn
from workers.flat import FlatModel
from workers.layers import Input
from workers.models import Normalizer, TrainedModel, build_network, load_model, save_model


def _model(activation, init="glorot_uniform", extra=()):
    return ModelSpec.model_validate(
        {
            "layers": [
                {"type": "dense", "units": 6, "activation": activation, "init": init},
                *extra,
                {"type": "dense", "units": 3},
            ]
        }
    )


def _train_step_and_round_trip(spec: ModelSpec, tmp_path):
    torch.manual_seed(0)
    net = build_network(spec, Input((5,)), 3)
    flat = FlatModel(net)
    before = flat.params.clone()
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    flat.zero_grad()
    loss_fn("cross_entropy")(net(x), y).backward()
    opt = build({"name": "sgd", "lr": 0.1})
    opt.step(flat.params, flat.gradient().clone(), opt.init(flat.params))
    assert not torch.equal(flat.params, before), "a training step must change the parameters"
    shift, scale = torch.full((5,), 0.5), torch.full((5,), 2.0)
    trained = TrainedModel(net, Normalizer(shift, scale), "cross_entropy", [0, 1, 2], Input((5,)))
    save_model(tmp_path / "model.pt", spec, trained, 3)
    loaded = load_model(tmp_path / "model.pt")
    assert not loaded.training
    net.eval()
    torch.testing.assert_close(loaded(x), net((x - shift) / scale))
    return loaded


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation(activation, tmp_path):
    loaded = _train_step_and_round_trip(_model(activation), tmp_path)
    if activation == "prelu":
        assert any(isinstance(m, torch.nn.PReLU) for m in loaded.net)


def test_predict_takes_tensors_arrays_and_lists_of_any_dtype(tmp_path):
    loaded = _train_step_and_round_trip(_model("relu"), tmp_path)
    x = torch.randn(8, 5)
    expected = loaded.predict(x)
    for given in (x.double(), x.numpy(), x.numpy().astype("float64"), x.tolist()):
        torch.testing.assert_close(loaded.predict(given), expected)
    torch.testing.assert_close(loaded(x.double()), loaded(x))


@pytest.mark.parametrize("init", INITIALIZERS)
def test_every_initializer(init, tmp_path):
    _train_step_and_round_trip(_model("relu", init), tmp_path)


def test_activation_and_initializer_parameters_are_used():
    spec = ModelSpec.model_validate(
        {
            "layers": [
                {
                    "type": "dense",
                    "units": 4,
                    "activation": {"type": "maxout", "pieces": 3},
                    "init": {"type": "normal", "mean": 1.0, "std": 0.001},
                },
                {
                    "type": "dense",
                    "units": 2,
                    "activation": {"type": "leaky_relu", "negative_slope": 0.2},
                    "init": {"type": "uniform", "low": 0.5, "high": 0.6},
                },
            ]
        }
    )
    net = build_network(spec, Input((3,)), 2)
    assert net[0].weight.shape == (12, 3)  # 4 units × 3 pieces
    assert abs(float(net[0].weight.detach().mean()) - 1.0) < 0.01
    assert net[3].negative_slope == 0.2
    assert float(net[2].weight.detach().min()) >= 0.5 and float(net[2].weight.detach().max()) <= 0.6


def test_dropout_and_orthogonal(tmp_path):
    spec = _model("tanh", "orthogonal", extra=({"type": "dropout", "rate": 0.3},))
    net = build_network(spec, Input((6,)), 3)
    w = net[0].weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(6), atol=1e-5, rtol=0)
    _train_step_and_round_trip(
        _model("tanh", "orthogonal", ({"type": "dropout", "rate": 0.3},)), tmp_path
    )


def test_output_units_must_match_the_data():
    with pytest.raises(SpecError, match=r"model.layers.1.units: must be 4"):
        build_network(_model("relu"), Input((5,)), 4)


def test_load_model_refuses_other_files(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a model exported by this project"):
        load_model(tmp_path / "other.pt")
