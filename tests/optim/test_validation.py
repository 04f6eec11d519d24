"""Every invalid hyperparameter raises a ValueError naming the key, the value and the range."""

from __future__ import annotations

import pytest
import torch

from ps.errors import SpecError
from ps.optim import RULES, build

BAD = [
    ({"name": "adamm"}, None, "optimizer.name", "unknown optimizer 'adamm'"),
    ({"name": "sgd", "lr": -1}, None, "optimizer.lr", "invalid value -1 (must be > 0)"),
    ({"name": "sgd", "lr": 0}, None, "optimizer.lr", "must be > 0"),
    ({"name": "sgd", "lr": "fast"}, None, "optimizer.lr", "must be a number"),
    ({"name": "sgd", "lr": float("nan")}, None, "optimizer.lr", "must be finite"),
    ({"name": "sgd", "momentum": -0.1}, None, "optimizer.momentum", "must be >= 0"),
    ({"name": "sgd", "dampening": 1.5}, None, "optimizer.dampening", "must be in [0, 1]"),
    ({"name": "sgd", "nesterov": "yes"}, None, "optimizer.nesterov", "must be true or false"),
    ({"name": "sgd", "nesterov": True}, None, "optimizer.nesterov", "requires momentum > 0"),
    ({"name": "nag", "nesterov": False}, None, "optimizer.nesterov", "unknown field"),
    ({"name": "momentum", "momentum": -1}, None, "optimizer.momentum", "must be >= 0"),
    ({"name": "adam", "betas": [0.9, 1.0]}, None, "optimizer.betas", "each in [0, 1)"),
    ({"name": "adam", "betas": [0.9]}, None, "optimizer.betas", "a pair"),
    ({"name": "adam", "betas2": 0.9}, None, "optimizer.betas2", "unknown field"),
    ({"name": "adam", "eps": -1e-8}, None, "optimizer.eps", "must be >= 0"),
    ({"name": "adam", "amsgrad": 1}, None, "optimizer.amsgrad", "must be true or false"),
    ({"name": "adamw", "weight_decay": -0.1}, None, "optimizer.weight_decay", "must be >= 0"),
    ({"name": "adam", "weight_decay": 0.1}, None, "optimizer.weight_decay", "regularization"),
    ({"name": "adamax", "betas": [-0.1, 0.9]}, None, "optimizer.betas", "each in [0, 1)"),
    ({"name": "adagrad", "lr_decay": -1}, None, "optimizer.lr_decay", "must be >= 0"),
    (
        {"name": "adagrad", "initial_accumulator_value": -1},
        None,
        "optimizer.initial_accumulator_value",
        "must be >= 0",
    ),
    ({"name": "adadelta", "rho": 1.1}, None, "optimizer.rho", "must be in [0, 1]"),
    ({"name": "rmsprop", "alpha": -0.1}, None, "optimizer.alpha", "must be in [0, 1]"),
    ({"name": "rmsprop", "centered": "no"}, None, "optimizer.centered", "must be true or false"),
    ({"name": "sgd", "clip_grad_norm": 0}, None, "optimizer.clip_grad_norm", "must be > 0"),
    ({"name": "sgd", "schedule": {"type": "linear"}}, None, "optimizer.schedule.type", "unknown"),
    (
        {"name": "sgd", "schedule": {"type": "step"}},
        None,
        "optimizer.schedule.step_size",
        "required",
    ),
    (
        {"name": "sgd", "schedule": {"type": "step", "step_size": 0}},
        None,
        "optimizer.schedule.step_size",
        "integer >= 1",
    ),
    (
        {"name": "sgd", "schedule": {"type": "exponential", "gamma": -2}},
        None,
        "optimizer.schedule.gamma",
        "must be > 0",
    ),
    ({"name": "sgd", "schedule": {"type": "cosine"}}, None, "optimizer.schedule.t_max", "required"),
    (
        {"name": "sgd", "schedule": {"type": "cosine", "t_max": 5, "warmup": 1}},
        None,
        "optimizer.schedule.warmup",
        "unknown field",
    ),
    (
        {"name": "sgd", "schedule": {"type": "warmup_cosine", "warmup_steps": 9, "t_max": 9}},
        None,
        "optimizer.schedule.warmup_steps",
        "must be < t_max",
    ),
    ({"name": "sgd"}, {"l2": -1}, "regularization.l2", "must be >= 0"),
    ({"name": "sgd"}, {"l1": "x"}, "regularization.l1", "must be a number"),
    ({"name": "sgd"}, {"l1_mode": "lasso"}, "regularization.l1_mode", "unknown mode 'lasso'"),
    ({"name": "sgd"}, {"l3": 1}, "regularization.l3", "unknown field"),
]


@pytest.mark.parametrize(("optimizer", "regularization", "path", "text"), BAD)
def test_invalid_hyperparameter_is_rejected_with_path_and_range(
    optimizer, regularization, path, text
):
    with pytest.raises(ValueError) as info:
        build(optimizer, regularization)
    assert isinstance(info.value, SpecError)
    assert info.value.path == path
    assert text in str(info.value)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_builds_with_its_defaults_and_a_zero_gradient_is_a_no_op(name):
    # AdamW's decoupled decay shrinks weights even without a gradient, so switch it off here.
    opt = build({"name": name, **({"weight_decay": 0.0} if name == "adamw" else {})})
    w = torch.randn(16)
    before = w.clone()
    state = opt.init(w)
    opt.step(w, torch.zeros(16), state)
    torch.testing.assert_close(w, before)


def test_non_flat_params_are_refused():
    with pytest.raises(ValueError, match="contiguous 1-D float32"):
        build({"name": "sgd"}).init(torch.zeros(2, 2))
