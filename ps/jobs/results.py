"""The result of a job, and the rule that a job never reports success it did not earn.

A succeeded job made every update of its budget (``total_steps``) unless its ``stop_reason``
says why not: ``early_stopping``, or ``rejected_gradients`` when exactly the missing updates
were skipped because every gradient of them was non-finite. Anything else is an error, not a
result.
"""

from __future__ import annotations

from typing import Any

from ps.errors import PSError
from ps.jobs.attempt import EARLY_STOPPING, AttemptOutcome
from ps.jobs.errors import IncompleteTraining
from ps.jobs.evaluator import Evaluator
from ps.jobs.events import JobResult
from ps.jobs.failures import FailureBudget
from ps.jobs.plan import JobPlan
from ps.jobs.telemetry import merge_rejected, staleness_counts
from ps.server.config import ShardStats
from ps.spec import JobSpec

SHORT_REASONS = ("early_stopping", "rejected_gradients")


def stop_reason(ended: str, steps: int, skipped: int, plan: JobPlan, max_steps: int | None) -> str:
    """Why training stopped, from how the attempt ended and the steps made.

    Raises:
        IncompleteTraining: fewer steps than the budget and no reason for it.
    """
    if ended == EARLY_STOPPING:
        return EARLY_STOPPING
    if steps == plan.total_steps:
        return "max_steps" if max_steps == steps else "epochs"
    if skipped and steps + skipped == plan.total_steps:
        return "rejected_gradients"
    raise IncompleteTraining(
        f"training ended at step {steps} of {plan.total_steps} ({skipped} updates skipped for "
        "non-finite gradients) with no reason to stop early"
    )


def check_result(result: JobResult) -> None:
    """The invariant at the point where a result is written.

    Raises:
        IncompleteTraining: ``steps`` short of ``total_steps`` without a reason that covers it.
    """
    if result.steps == result.total_steps:
        return
    if result.stop_reason == "early_stopping" and result.steps < result.total_steps:
        return
    if (
        result.stop_reason == "rejected_gradients"
        and result.steps + result.skipped_updates == result.total_steps
    ):
        return
    raise IncompleteTraining(
        f"refusing to report success: {result.steps} of {result.total_steps} steps with "
        f"stop_reason {result.stop_reason!r}"
    )


def check_diverged(stats: list[ShardStats]) -> None:
    """Raise the first shard's divergence, if any stopped for non-finite gradients."""
    for s in stats:
        if s.diverged:
            raise PSError(s.diverged)


def make_result(
    job_id: str,
    spec: JobSpec,
    plan: JobPlan,
    outcome: AttemptOutcome,
    stats: list[ShardStats],
    steps: int,
    exported_step: int,
    evaluator: Evaluator,
    final: dict[str, Any],
    wall: float,
    budget: FailureBudget,
) -> JobResult:
    """Assemble result.json's content (checking :func:`check_result`)."""
    check_diverged(stats)
    skipped = min(s.skipped_updates for s in stats)
    reason = stop_reason(outcome.stop_reason, steps, skipped, plan, spec.training.max_steps)
    samples = sum(t.samples for t in outcome.totals)
    result = JobResult(
        job_id=job_id,
        name=spec.name,
        stop_reason=reason,
        steps=steps,
        total_steps=plan.total_steps,
        epochs=plan.epoch_at(steps),
        exported_step=exported_step,
        best_step=evaluator.best[0] if evaluator.best else None,
        wall_time_s=wall,
        samples=samples,
        samples_per_s=samples / wall if wall > 0 else 0.0,
        final_evaluation=evaluator.last.to_dict() if evaluator.last else None,
        n_params=sum(s.size for s in stats),
        skipped_updates=skipped,
        rejected_gradients=merge_rejected(stats),
        staleness=staleness_counts(stats),
        workers=[vars(t) for t in outcome.totals],
        worker_restarts=budget.worker_restarts,
        restores=budget.restores,
        shards=[s.summary() for s in stats],
        table_rows=sum(s.table_rows for s in stats),
        **final,
    )
    check_result(result)
    return result
