"""State round trip: stop after k steps, save, restore into a fresh optimizer, continue."""

from __future__ import annotations

import io

import pytest
import torch

from ps.optim import RULES, build
from tests.optim.problems import quadratic

CONFIGS = {name: {"name": name} for name in RULES} | {
    "rmsprop": {"name": "rmsprop", "centered": True, "momentum": 0.9},
    "adam": {"name": "adam", "amsgrad": True},
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_restored_run_is_identical_to_an_uninterrupted_one(name):
    cfg = CONFIGS[name]
    reg = {"l2": 0.01, "l1": 0.001, "l1_mode": "proximal"}
    sched = {"type": "cosine", "t_max": 30}
    w0, grad = quadratic(32)

    straight = w0.clone()
    opt = build({**cfg, "schedule": sched}, reg)
    state = opt.init(straight)
    for _ in range(30):
        opt.step(straight, grad(straight), state)

    resumed = w0.clone()
    first = build({**cfg, "schedule": sched}, reg)
    s1 = first.init(resumed)
    for _ in range(12):
        first.step(resumed, grad(resumed), s1)
    blob = io.BytesIO()
    torch.save({"params": resumed, "optimizer": first.state_dict(s1)}, blob)
    blob.seek(0)
    saved = torch.load(blob)

    second = build({**cfg, "schedule": sched}, reg)
    resumed = saved["params"].clone()
    s2 = second.load_state_dict(saved["optimizer"])
    assert s2.step == 12
    for _ in range(18):
        second.step(resumed, grad(resumed), s2)
    assert torch.equal(resumed, straight)


def test_loading_another_rules_state_is_refused():
    w = torch.zeros(4)
    adam = build({"name": "adam"})
    with pytest.raises(ValueError, match="checkpoint is for optimizer 'adam'"):
        build({"name": "adamax"}).load_state_dict(adam.state_dict(adam.init(w)))


def test_loading_state_with_missing_buffers_is_refused():
    w = torch.zeros(4)
    plain = build({"name": "rmsprop"})
    with pytest.raises(ValueError, match="do not match"):
        build({"name": "rmsprop", "centered": True}).load_state_dict(
            plain.state_dict(plain.init(w))
        )
