"""The numbers of a job that follow from its spec and its data size (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from ps.errors import SpecError
from ps.spec import JobSpec
from workers.data import batches_per_epoch, worker_rows
from workers.data.assignment import item_batches


@dataclass(frozen=True)
class JobPlan:
    """Step accounting for one job.

    A *step* is a parameter-server update (a version). In sync mode one step consumes one
    minibatch from every worker; in async and ssp each worker's push is a step.

    Attributes:
        batches: minibatches per epoch of each worker.
        steps_per_epoch: updates per pass over the training split.
        worker_budget: steps (clock ticks) each worker may take.
        total_steps: updates the job will make (epochs × steps_per_epoch, capped by max_steps).
        eval_every: updates between evaluations.
        worker_rows: each worker's [lo, hi) rows of the training split.
    """

    batches: int
    steps_per_epoch: int
    worker_budget: int
    total_steps: int
    eval_every: int
    worker_rows: tuple[tuple[int, int], ...]

    @classmethod
    def make(cls, spec: JobSpec, n_train: int, item_rows: tuple[int, ...] = ()) -> JobPlan:
        """The plan for ``n_train`` training rows; with ``item_rows`` (an async streamed job:
        the training rows of each work item) the ledger's: every item is read whole by one
        worker, in ``ceil(rows / batch_size)`` steps, and any worker may take any item.

        Raises:
            SpecError: fewer rows than workers.
        """
        t = spec.training
        if item_rows:
            return cls.for_ledger(spec, n_train, item_rows)
        if n_train < t.workers:
            raise SpecError(
                "training.workers",
                f"{t.workers} workers cannot share {n_train} training rows (at most {n_train})",
            )
        batches = batches_per_epoch(n_train, t.workers, t.batch_size)
        per_epoch = batches if t.mode == "sync" else batches * t.workers
        return cls._of(spec, n_train, batches, per_epoch, batches * t.epochs)

    @classmethod
    def for_ledger(cls, spec: JobSpec, n_train: int, item_rows: tuple[int, ...]) -> JobPlan:
        t = spec.training
        per_epoch = sum(item_batches(rows, t.batch_size) for rows in item_rows if rows)
        return cls._of(spec, n_train, per_epoch, per_epoch, per_epoch * t.epochs)

    @classmethod
    def _of(cls, spec: JobSpec, n_train: int, batches: int, per_epoch: int, budget: int) -> JobPlan:
        t = spec.training
        total = per_epoch * t.epochs
        if t.max_steps is not None:
            total = min(total, t.max_steps)
        return cls(
            batches=batches,
            steps_per_epoch=per_epoch,
            worker_budget=budget,
            total_steps=total,
            eval_every=t.eval_every_steps or per_epoch,
            worker_rows=tuple(worker_rows(n_train, t.workers)),
        )

    def epoch_at(self, step: int) -> float:
        return step / self.steps_per_epoch
