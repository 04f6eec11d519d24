"""SGD, heavy-ball momentum and Nesterov momentum (torch.optim.SGD semantics)."""

from __future__ import annotations

import torch
from torch import Tensor

from ps.errors import SpecError
from ps.optim.hyper import Hyper, boolean, non_negative, unit_closed
from ps.optim.rule import Rule


class SGD(Rule):
    r"""Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    With gradient :math:`g_t`, coupled L2 :math:`\lambda`, momentum :math:`\mu`, dampening
    :math:`\tau`::

        g_t <- g_t + λ·w_{t-1}
        b_1 <- g_1;  b_t <- μ·b_{t-1} + (1 - τ)·g_t          (if μ > 0)
        d_t <- g_t + μ·b_t   if nesterov   else   b_t        (d_t = g_t if μ = 0)
        w_t <- w_{t-1} - lr·d_t

    Note torch's (and our) Nesterov form ``g + μ·b`` is the Sutskever formulation rewritten in
    terms of the current parameters, not the look-ahead parameters. Runs torch's fused CPU kernel.
    """

    name = "sgd"
    lr_default = 1e-3
    hypers = (
        Hyper("momentum", 0.0, non_negative),
        Hyper("dampening", 0.0, unit_closed),
        Hyper("nesterov", False, boolean),
    )

    def __init__(self, hp):
        super().__init__(hp)
        if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
            raise SpecError(
                "optimizer.nesterov",
                f"Nesterov momentum requires momentum > 0 and dampening = 0 "
                f"(got momentum={hp['momentum']}, dampening={hp['dampening']})",
            )

    def init(self, params: Tensor) -> dict[str, Tensor]:
        return {"momentum_buffer": torch.zeros_like(params)} if self.hp["momentum"] > 0 else {}

    def apply(self, params, grads, state, scratch, step, lr, l2):
        momentum = self.hp["momentum"]
        torch._fused_sgd_(
            [params],
            [grads],
            [state["momentum_buffer"]] if momentum > 0 else [],
            weight_decay=l2,
            momentum=momentum,
            lr=lr,
            dampening=self.hp["dampening"],
            nesterov=self.hp["nesterov"],
            maximize=False,
            is_first_step=step == 1,
        )


class Momentum(SGD):
    """Heavy-ball momentum: :class:`SGD` with ``momentum`` defaulting to 0.9."""

    name = "momentum"
    hypers = (
        Hyper("momentum", 0.9, non_negative),
        Hyper("dampening", 0.0, unit_closed),
    )

    def __init__(self, hp):
        super().__init__({**hp, "nesterov": False})


class NAG(SGD):
    """Nesterov accelerated gradient: :class:`SGD` with ``nesterov=True``, ``momentum`` 0.9."""

    name = "nag"
    hypers = (Hyper("momentum", 0.9, non_negative),)

    def __init__(self, hp):
        super().__init__({**hp, "dampening": 0.0, "nesterov": True})
