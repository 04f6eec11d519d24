"""A step allocates nothing that grows with the parameter count (scratch space is reused)."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from ps.optim import RULES, build

N = 200_000


def _largest_allocation(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((e.cpu_memory_usage for e in prof.events()), default=0)


def test_the_profiler_sees_a_buffer_sized_allocation():
    g = torch.randn(N)
    assert _largest_allocation(lambda: g * 2) >= 4 * N


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize(
    "regularization",
    [{"l2": 0.01}, {"l1": 0.01}, {"l1": 0.01, "l1_mode": "proximal"}],
    ids=["l2", "l1-subgradient", "l1-proximal"],
)
def test_step_allocates_no_buffer_sized_memory(name, regularization):
    cfg = {"name": name, "clip_grad_norm": 1.0}
    if name == "rmsprop":
        cfg |= {"centered": True, "momentum": 0.9}
    opt = build(cfg, regularization)
    params, grads = torch.randn(N), torch.randn(N)
    state = opt.init(params)
    opt.step(params, grads.clone(), state)
    assert _largest_allocation(lambda: opt.step(params, grads, state)) < 1024
