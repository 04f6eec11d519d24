"""Per-coordinate adaptive rules: AdaGrad, AdaDelta, RMSProp (torch.optim semantics)."""

from __future__ import annotations

import torch
from torch import Tensor

from ps.optim.hyper import Hyper, boolean, non_negative, unit_closed
from ps.optim.rule import Rule


class Adagrad(Rule):
    r"""AdaGrad, as ``torch.optim.Adagrad``::

        g_t   <- g_t + λ·w_{t-1}
        lr_t  <- lr / (1 + (t - 1)·lr_decay)
        s_t   <- s_{t-1} + g_t²                      (s_0 = initial_accumulator_value)
        w_t   <- w_{t-1} - lr_t · g_t / (sqrt(s_t) + eps)

    eps is added after the square root. Runs torch's fused CPU kernel.
    """

    name = "adagrad"
    lr_default = 1e-2
    hypers = (
        Hyper("lr_decay", 0.0, non_negative),
        Hyper("initial_accumulator_value", 0.0, non_negative),
        Hyper("eps", 1e-10, non_negative),
    )

    def init(self, params: Tensor) -> dict[str, Tensor]:
        return {"sum": torch.full_like(params, self.hp["initial_accumulator_value"])}

    def apply(self, params, grads, state, scratch, step, lr, l2):
        torch._fused_adagrad_(
            [params],
            [grads],
            [state["sum"]],
            [scratch.new_full((), float(step))],
            lr=lr,
            lr_decay=self.hp["lr_decay"],
            weight_decay=l2,
            eps=self.hp["eps"],
            maximize=False,
        )


class Adadelta(Rule):
    r"""AdaDelta, as ``torch.optim.Adadelta``::

    g_t <- g_t + λ·w_{t-1}
    v_t <- ρ·v_{t-1} + (1 - ρ)·g_t²
    Δ_t <- sqrt(u_{t-1} + eps) / sqrt(v_t + eps) · g_t
    u_t <- ρ·u_{t-1} + (1 - ρ)·Δ_t²
    w_t <- w_{t-1} - lr·Δ_t
    """

    name = "adadelta"
    lr_default = 1.0
    hypers = (Hyper("rho", 0.9, unit_closed), Hyper("eps", 1e-6, non_negative))

    def init(self, params: Tensor) -> dict[str, Tensor]:
        return {"square_avg": torch.zeros_like(params), "acc_delta": torch.zeros_like(params)}

    def apply(self, params, grads, state, scratch, step, lr, l2):
        rho, eps = self.hp["rho"], self.hp["eps"]
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        if l2:
            grads.add_(params, alpha=l2)
        square_avg.mul_(rho).addcmul_(grads, grads, value=1 - rho)
        grads.div_(torch.add(square_avg, eps, out=scratch).sqrt_())
        delta = torch.add(acc_delta, eps, out=scratch).sqrt_().mul_(grads)
        acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        params.add_(delta, alpha=-lr)


class RMSprop(Rule):
    r"""RMSProp, as ``torch.optim.RMSprop``::

        g_t <- g_t + λ·w_{t-1}
        v_t <- α·v_{t-1} + (1 - α)·g_t²
        m_t <- α·m_{t-1} + (1 - α)·g_t;  v'_t = v_t - m_t²     (centered)   else v'_t = v_t
        d_t <- g_t / (sqrt(v'_t) + eps)
        b_t <- μ·b_{t-1} + d_t;  w_t <- w_{t-1} - lr·b_t        (momentum μ > 0)
        w_t <- w_{t-1} - lr·d_t                                 (μ = 0)

    eps is added outside the square root.
    """

    name = "rmsprop"
    lr_default = 1e-2
    hypers = (
        Hyper("alpha", 0.99, unit_closed),
        Hyper("eps", 1e-8, non_negative),
        Hyper("momentum", 0.0, non_negative),
        Hyper("centered", False, boolean),
    )

    def init(self, params: Tensor) -> dict[str, Tensor]:
        state = {"square_avg": torch.zeros_like(params)}
        if self.hp["centered"]:
            state["grad_avg"] = torch.zeros_like(params)
        if self.hp["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(params)
        return state

    def apply(self, params, grads, state, scratch, step, lr, l2):
        alpha, eps, momentum = self.hp["alpha"], self.hp["eps"], self.hp["momentum"]
        if l2:
            grads.add_(params, alpha=l2)
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(grads, grads, value=1 - alpha)
        if self.hp["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(grads, 1 - alpha)
            avg = torch.addcmul(square_avg, grad_avg, grad_avg, value=-1, out=scratch).sqrt_()
        else:
            avg = torch.sqrt(square_avg, out=scratch)
        avg.add_(eps)
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf.mul_(momentum).addcdiv_(grads, avg)
            params.add_(buf, alpha=-lr)
        else:
            params.addcdiv_(grads, avg, value=-lr)
