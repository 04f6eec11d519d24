"""One job resolved once: its spec, step plan, model layout and optimizer, built by the supervisor
after the data is loaded and handed to everything that builds the job's parts (the actors, the
shards' configurations, the workers' configurations). Nothing downstream re-derives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ps.hashing import shard_of
from ps.jobs.evaluator import Evaluator
from ps.jobs.plan import JobPlan
from ps.optim.config import OptimizerConfig
from ps.protocol.messages import TableConfig
from ps.spec import JobSpec
from workers.layers import Input


@dataclass(frozen=True)
class ModelLayout:
    """What the actors must know of the model and the data.

    Attributes:
        n_params / n_buffers: the flat dense state's parts.
        inputs / n_outputs: what the model takes and how many outputs it makes.
        tables: its embedding tables.
        eval_keys: per table, the ids evaluations read (the shards capture their rows);
            ``whole_tables``: evaluations capture whole tables instead.
    """

    n_params: int
    n_buffers: int
    inputs: Input
    n_outputs: int
    tables: tuple[TableConfig, ...] = ()
    eval_keys: dict[int, np.ndarray] = field(default_factory=dict)
    whole_tables: bool = False

    @classmethod
    def of(cls, evaluator: Evaluator) -> ModelLayout:
        flat, data = evaluator.flat, evaluator.data
        return cls(
            n_params=flat.n_params,
            n_buffers=flat.n_buffers,
            inputs=data.inputs,
            n_outputs=data.n_outputs,
            tables=evaluator.tables,
            eval_keys=evaluator.eval_keys(),
            whole_tables=evaluator.whole_tables,
        )

    def shard_eval_keys(self, shard: int, shards: int) -> dict[int, np.ndarray]:
        """The evaluation ids whose rows ``shard`` keeps."""
        return {t: k[shard_of(t, k, shards) == shard] for t, k in self.eval_keys.items()}


@dataclass(frozen=True)
class ResolvedJob:
    """Attributes:
    spec: the validated spec (paths resolved by admission).
    plan: its step accounting for the data loaded.
    layout: the model's parts and the data's shape.
    optimizer: the spec's optimizer with the schedule's ``t_max`` set to the total steps.
    """

    spec: JobSpec
    plan: JobPlan
    layout: ModelLayout
    optimizer: OptimizerConfig

    @classmethod
    def of(cls, spec: JobSpec, plan: JobPlan, evaluator: Evaluator) -> ResolvedJob:
        optimizer = spec.optimizer.for_steps(plan.total_steps)
        return cls(spec, plan, ModelLayout.of(evaluator), optimizer)
