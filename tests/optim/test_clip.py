"""Global-norm clipping against torch.nn.utils.clip_grad_norm_."""

from __future__ import annotations

import pytest
import torch

from ps.optim import build
from ps.optim.regularize import clip_grad_norm_


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 5.0, 100.0])
def test_matches_torch_clip_grad_norm(max_norm):
    g = torch.randn(1000, generator=torch.Generator().manual_seed(3))
    p = torch.nn.Parameter(torch.zeros(1000))
    p.grad = g.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_([p], max_norm)
    ours = g.clone()
    norm = clip_grad_norm_(ours, max_norm)
    assert norm == pytest.approx(float(expected_norm), rel=1e-6)
    torch.testing.assert_close(ours, p.grad, rtol=1e-6, atol=0)


def test_clipping_uses_a_given_global_norm_for_a_shard_slice():
    g = torch.ones(4)
    clip_grad_norm_(g, max_norm=1.0, norm=10.0)
    torch.testing.assert_close(g, torch.full((4,), 1.0 / (10.0 + 1e-6)))


def test_optimizer_clips_before_the_rule():
    w = torch.zeros(2)
    opt = build({"name": "sgd", "lr": 1.0, "clip_grad_norm": 1.0})
    state = opt.init(w)
    opt.step(w, torch.tensor([3.0, 4.0]), state)
    torch.testing.assert_close(w, -torch.tensor([0.6, 0.8]), rtol=1e-5, atol=0)
