"""Learning-rate schedules against their formulas and torch.optim.lr_scheduler."""

from __future__ import annotations

import math

import pytest
import torch

from ps.optim import build


def _lrs(schedule: dict, lr: float = 0.1, steps: int = 40, total_steps=None) -> list[float]:
    opt = build({"name": "sgd", "lr": lr, "schedule": schedule}, total_steps=total_steps)
    w = torch.zeros(3)
    state = opt.init(w)
    return [opt.step(w, torch.zeros(3), state) for _ in range(steps)]


def _torch_lrs(make, lr: float = 0.1, steps: int = 40) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(
    ("schedule", "make"),
    [
        (
            {"type": "step", "step_size": 7, "gamma": 0.5},
            lambda o: torch.optim.lr_scheduler.StepLR(o, 7, 0.5),
        ),
        (
            {"type": "exponential", "gamma": 0.9},
            lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9),
        ),
        (
            {"type": "cosine", "t_max": 40, "min_lr": 0.01},
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 40, eta_min=0.01),
        ),
    ],
    ids=["step", "exponential", "cosine"],
)
def test_matches_torch_lr_scheduler(schedule, make):
    assert _lrs(schedule) == pytest.approx(_torch_lrs(make), rel=1e-9, abs=1e-12)


def test_constant_is_the_default():
    assert _lrs(None, lr=0.3, steps=5) == [0.3] * 5


def test_cosine_defaults_t_max_to_the_jobs_total_steps_and_holds_min_after():
    lrs = _lrs({"type": "cosine"}, lr=1.0, steps=30, total_steps=20)
    assert lrs[0] == 1.0
    assert lrs[10] == pytest.approx(0.5)
    assert lrs[20:] == [0.0] * 10


def test_warmup_cosine_formula():
    lrs = _lrs({"type": "warmup_cosine", "warmup_steps": 4, "t_max": 24, "min_lr": 0.0}, lr=1.0)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    for k in range(4, 24):
        assert lrs[k] == pytest.approx((1 + math.cos(math.pi * (k - 4) / 20)) / 2)
    assert lrs[24:] == [0.0] * 16
