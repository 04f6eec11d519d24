"""Adam, AdaMax and AdamW (torch.optim semantics)."""

from __future__ import annotations

import torch
from torch import Tensor

from ps.optim.hyper import Hyper, betas, boolean, non_negative
from ps.optim.rule import Rule


class Adam(Rule):
    r"""Adam, as ``torch.optim.Adam``::

        g_t <- g_t + λ·w_{t-1}
        m_t <- β1·m_{t-1} + (1 - β1)·g_t
        v_t <- β2·v_{t-1} + (1 - β2)·g_t²
        v̂_t <- max(v̂_{t-1}, v_t)   if amsgrad   else   v_t
        w_t <- w_{t-1} - lr · (m_t / (1 - β1^t)) / (sqrt(v̂_t / (1 - β2^t)) + eps)

    Runs torch's fused CPU kernel (one pass over the buffers).
    """

    name = "adam"
    lr_default = 1e-3
    decoupled = False
    hypers = (
        Hyper("betas", (0.9, 0.999), betas),
        Hyper("eps", 1e-8, non_negative),
        Hyper("amsgrad", False, boolean),
    )

    def init(self, params: Tensor) -> dict[str, Tensor]:
        state = {"exp_avg": torch.zeros_like(params), "exp_avg_sq": torch.zeros_like(params)}
        if self.hp["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(params)
        return state

    def apply(self, params, grads, state, scratch, step, lr, l2):
        beta1, beta2 = self.hp["betas"]
        if self.decoupled:
            # AdamW's own weight_decay is decoupled; the spec's l2 stays coupled (in the gradient).
            if l2:
                grads.add_(params, alpha=l2)
            kernel, weight_decay = torch._fused_adamw_, self.hp["weight_decay"]
        else:
            kernel, weight_decay = torch._fused_adam_, l2
        kernel(
            [params],
            [grads],
            [state["exp_avg"]],
            [state["exp_avg_sq"]],
            [state["max_exp_avg_sq"]] if self.hp["amsgrad"] else [],
            [scratch.new_full((), float(step))],
            amsgrad=self.hp["amsgrad"],
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=weight_decay,
            eps=self.hp["eps"],
            maximize=False,
        )


class AdamW(Adam):
    r"""AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay ``wd``::

        w_{t-1} <- w_{t-1} · (1 - lr·wd)       (before the Adam step; no effect on m, v)
        then the Adam update above, with g_t not including wd.

    The spec's ``regularization.l2`` is still coupled (added to the gradient).
    """

    name = "adamw"
    decoupled = True
    hypers = (*Adam.hypers, Hyper("weight_decay", 1e-2, non_negative))


class Adamax(Rule):
    r"""AdaMax (Adam with the infinity norm), as ``torch.optim.Adamax``::

    g_t <- g_t + λ·w_{t-1}
    m_t <- β1·m_{t-1} + (1 - β1)·g_t
    u_t <- max(β2·u_{t-1}, |g_t| + eps)
    w_t <- w_{t-1} - (lr / (1 - β1^t)) · m_t / u_t
    """

    name = "adamax"
    lr_default = 2e-3
    hypers = (Hyper("betas", (0.9, 0.999), betas), Hyper("eps", 1e-8, non_negative))

    def init(self, params: Tensor) -> dict[str, Tensor]:
        return {"exp_avg": torch.zeros_like(params), "exp_inf": torch.zeros_like(params)}

    def apply(self, params, grads, state, scratch, step, lr, l2):
        beta1, beta2 = self.hp["betas"]
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        if l2:
            grads.add_(params, alpha=l2)
        exp_avg.lerp_(grads, 1 - beta1)
        torch.maximum(exp_inf.mul_(beta2), grads.abs_().add_(self.hp["eps"]), out=exp_inf)
        params.addcdiv_(exp_avg, exp_inf, value=-lr / (1 - beta1**step))
