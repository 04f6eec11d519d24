"""The interface every update rule implements.

A rule owns no tensors: its state lives in the dict returned by :meth:`Rule.init`, all flat and
the same length as the parameters, so a checkpoint is a handful of tensors plus a step count.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from ps.optim.hyper import Hyper


class Rule:
    """An update rule applied in place to one flat float32 buffer.

    Subclasses declare ``name``, ``lr_default`` and ``hypers`` and implement ``init`` and
    ``apply``. ``apply`` may overwrite ``grads`` and ``scratch`` (both are owned by the caller for
    the duration of the step).
    """

    name: ClassVar[str]
    lr_default: ClassVar[float]
    hypers: ClassVar[tuple[Hyper, ...]] = ()

    def __init__(self, hp: dict[str, Any]) -> None:
        self.hp = hp

    def init(self, params: Tensor) -> dict[str, Tensor]:
        """Return the rule's state buffers for ``params`` (saved in checkpoints)."""
        return {}

    def apply(
        self,
        params: Tensor,
        grads: Tensor,
        state: dict[str, Tensor],
        scratch: Tensor,
        step: int,
        lr: float,
        l2: float,
    ) -> None:
        """Apply update number ``step`` (1-based) with learning rate ``lr`` and coupled L2 ``l2``."""
        raise NotImplementedError
