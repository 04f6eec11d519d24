"""L1 (subgradient and proximal) and L2 against closed forms."""

from __future__ import annotations

import torch

from ps.optim import RULES, build


def test_l1_subgradient_plain_sgd_closed_form():
    w = torch.tensor([1.0, -2.0, 0.0, 0.5])
    g = torch.tensor([0.1, 0.2, -0.3, 0.0])
    opt = build({"name": "sgd", "lr": 0.5}, {"l1": 0.2})
    state = opt.init(w)
    expected = w - 0.5 * (g + 0.2 * torch.sign(w))
    opt.step(w, g.clone(), state)
    torch.testing.assert_close(w, expected, rtol=0, atol=0)


def test_l1_proximal_is_soft_threshold_after_the_step():
    w = torch.tensor([1.0, -0.05, 0.02, -2.0, 0.3])
    g = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.1])
    lr, l1 = 0.1, 0.6
    opt = build({"name": "sgd", "lr": lr}, {"l1": l1, "l1_mode": "proximal"})
    state = opt.init(w)
    z = w - lr * g
    expected = torch.sign(z) * torch.clamp(z.abs() - lr * l1, min=0)
    opt.step(w, g.clone(), state)
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-7)
    # |z| <= lr·l1 = 0.06 for the 2nd and 3rd coordinates: exactly zero, not merely small.
    assert w[1].item() == 0.0 and w[2].item() == 0.0
    assert w[0].item() != 0.0 and w[3].item() != 0.0


def test_proximal_l1_gives_exact_zeros_where_l2_does_not():
    """Lasso-style least squares with irrelevant features: proximal L1 zeroes them exactly."""
    torch.manual_seed(0)
    x = torch.randn(200, 10)
    true_w = torch.tensor([2.0, -3.0, 1.5] + [0.0] * 7)
    y = x @ true_w + 0.01 * torch.randn(200)

    def fit(regularization):
        w = torch.zeros(10)
        opt = build({"name": "sgd", "lr": 0.1}, regularization)
        state = opt.init(w)
        for _ in range(300):
            opt.step(w, x.T @ (x @ w - y) / len(y), state)
        return w

    w_prox = fit({"l1": 0.1, "l1_mode": "proximal"})
    w_l2 = fit({"l2": 0.1})
    assert (w_prox[3:] == 0).all(), w_prox
    assert (w_prox[:3] != 0).all()
    assert (w_l2[3:] != 0).all(), "L2 shrinks but should not produce exact zeros"


def test_proximal_uses_the_scheduled_learning_rate():
    w = torch.tensor([1.0])
    opt = build(
        {"name": "sgd", "lr": 1.0, "schedule": {"type": "exponential", "gamma": 0.5}},
        {"l1": 0.1, "l1_mode": "proximal"},
    )
    state = opt.init(w)
    for k in range(3):
        before = w.clone()
        opt.step(w, torch.zeros(1), state)
        torch.testing.assert_close(before - w, torch.tensor([0.1 * 0.5**k]))


def test_l2_equals_coupled_weight_decay_for_every_rule():
    """l2 adds l2·w to the gradient: the same as feeding g + l2·w with l2 = 0."""
    w0 = torch.randn(100, generator=torch.Generator().manual_seed(1))
    g = torch.randn(100, generator=torch.Generator().manual_seed(2))
    for name in RULES:
        a, b = w0.clone(), w0.clone()
        opt_a, opt_b = build({"name": name}, {"l2": 0.05}), build({"name": name})
        sa, sb = opt_a.init(a), opt_b.init(b)
        for _ in range(5):
            opt_a.step(a, g.clone(), sa)
            opt_b.step(b, g + 0.05 * b, sb)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
