"""Update rules on flat float32 buffers, applied in place at the parameter server.

``opt = build(spec.optimizer, spec.regularization)``; ``state = opt.init(params)``;
``opt.step(params, grads, state)``. See :mod:`ps.optim.build`.
"""

from ps.optim.build import (
    L1_MODES,
    RULES,
    Optimizer,
    OptimizerState,
    build,
    resolve_optimizer,
    resolve_regularization,
    state_buffers,
)
from ps.optim.schedules import SCHEDULE_TYPES

__all__ = [
    "L1_MODES",
    "RULES",
    "SCHEDULE_TYPES",
    "Optimizer",
    "OptimizerState",
    "build",
    "resolve_optimizer",
    "resolve_regularization",
    "state_buffers",
]
