"""Bagging ensembles as one job: ``ensemble: {members: K, bootstrap: true, combine: vote}``.

The job's supervisor (:class:`EnsembleSupervisor`) starts one member supervisor per member — a
whole job of its own (its workers and shards, checkpoints, fault tolerance) under the job id
``<job_id>.m<k>``, writing into ``members/<k>/`` — and trains them concurrently. Every member
splits the data with the job's seed (one validation and test split for all); member ``k``
trains on its bootstrap sample of the training split with its own seed (initialization,
batches, dropout). Their events reach the job's history labelled ``member``. The job fails or is
cancelled as a whole. At the end the members' networks become one :class:`EnsembleNet`, evaluated
on the job's splits, exported as ``model.pt`` / ``model.pt2``, and ``result.json`` holds the
ensemble's metrics and each member's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

import ray

from ps.jobs.actors import actor_name
from ps.jobs.admission import Member
from ps.jobs.errors import JobCancelled, JobPreempted
from ps.jobs.events import (
    Evaluation,
    Finished,
    JobResult,
    Progress,
    Restored,
    StateChanged,
    Telemetry,
    WorkerReplaced,
)
from ps.jobs.handle import Outcome, SupervisorHandle
from ps.jobs.plan import JobPlan
from ps.jobs.state import JobState
from ps.jobs.supervisor import JobSupervisor
from ps.spec import JobSpec
from workers.data import load_dataset
from workers.ensemble import EnsembleNet
from workers.evaluation import evaluate, model_loss
from workers.models import TrainedModel, load_model, save_model

FORWARDED = (Progress, Evaluation, Telemetry, Restored, WorkerReplaced)


def supervisor_class(spec: JobSpec) -> type[JobSupervisor]:
    """The supervisor a job needs."""
    return EnsembleSupervisor if spec.ensemble is not None else JobSupervisor


def member_id(job_id: str, index: int) -> str:
    return f"{job_id}.m{index}"


class EnsembleSupervisor(JobSupervisor):
    """Runs an ensemble job (see the module docstring); the same interface as a job's."""

    def __init__(
        self, job_id: str, spec: JobSpec, run_dir: str, resume: bool = False, attempt: int = 0
    ) -> None:
        super().__init__(job_id, spec, run_dir, resume, attempt=attempt)
        self.children: list[SupervisorHandle] = []
        self._progress: dict[int, Progress] = {}
        self.total_steps = 0

    async def cancel(self) -> None:
        self.cancelled = True
        await asyncio.gather(
            *[c.actor.cancel.remote() for c in self.children], return_exceptions=True
        )

    async def preempt(self) -> None:
        self.preempted = True
        await asyncio.gather(
            *[c.actor.preempt.remote() for c in self.children], return_exceptions=True
        )

    def _child(self, index: int) -> SupervisorHandle:
        spec, job_id = self.spec, member_id(self.job_id, index)
        with contextlib.suppress(ValueError):  # an earlier incarnation's member
            ray.kill(ray.get_actor(actor_name(job_id, "supervisor")), no_restart=True)
        return SupervisorHandle.start(
            job_id,
            spec.member(index),
            str(self.rundir.path / "members" / str(index)),
            resume=self.resume,
            member=Member(index, spec.seed, spec.ensemble.bootstrap),
        )

    async def _member(self, index: int, child: SupervisorHandle) -> JobResult:
        """Relay a member's history into the job's (labelled with its number, with the job's
        own progress summed over the members) until it ends; its result.

        Raises:
            JobCancelled / RuntimeError: it was cancelled or failed.
        """
        async for event in child.stream():
            if isinstance(event, FORWARDED):
                await self.emit(dataclasses.replace(event, member=index))
            if isinstance(event, Progress):
                self._progress[index] = event
                await self.emit(_total_progress(self._progress, self.total_steps))
        outcome: Outcome = await child.actor.outcome.remote()
        if outcome.kind == "succeeded":
            return outcome.result
        if outcome.kind == "cancelled":
            raise JobCancelled("the job was cancelled")
        if outcome.kind == "preempted":
            raise JobPreempted(f"member {index}: {outcome.reason}")
        raise RuntimeError(outcome.reason)

    async def _run(self) -> JobResult:
        spec = self.spec
        if self.resume:  # keep the history; the members resume from their own checkpoints
            self.rundir.path.mkdir(parents=True, exist_ok=True)
            self.rundir.rewind(2**62)
        else:
            self.rundir.open(False)
        await self.emit(StateChanged(state=JobState.STARTING))
        data = await asyncio.to_thread(load_dataset, spec.data, spec.model.loss, spec.seed, None)
        plan = JobPlan.make(spec, len(data.x_train))
        members = spec.ensemble.members
        self.total_steps = plan.total_steps * members
        started = time.monotonic()
        self.children = [self._child(i) for i in range(members)]
        if self.preempted:  # asked before the members existed
            await self.preempt()
        runs = [asyncio.ensure_future(self._member(i, c)) for i, c in enumerate(self.children)]
        await self.emit(
            StateChanged(
                state=JobState.RUNNING,
                total_steps=self.total_steps,
                steps_per_epoch=plan.steps_per_epoch,
            )
        )
        try:
            results = await self._wait(runs)
        finally:
            for child in self.children:
                child.kill()
        result = await self._finish(data, results, time.monotonic() - started)
        await self.emit(Finished(result=result))
        return result

    async def _wait(self, runs: list) -> list[JobResult]:
        """Every member's result; the first failure (or a cancel) stops the others."""
        done, pending = await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if t.exception() is not None]
        if failed and self.preempted:  # every member checkpoints; each resumes from its own
            await asyncio.gather(*pending, return_exceptions=True)
            raise JobPreempted("its members stopped at checkpoints to go back to the queue")
        if failed:
            # Whether the job was cancelled is decided before the failure stops the others.
            cancelled = self.cancelled
            await self.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            index = runs.index(failed[0])
            cause = failed[0].exception()
            if cancelled or isinstance(cause, JobCancelled):
                raise JobCancelled("the job was cancelled")
            raise RuntimeError(f"ensemble member {index} failed: {cause}")
        return [t.result() for t in runs]

    async def _finish(self, data, results: list[JobResult], wall: float) -> JobResult:
        model, metrics = await asyncio.to_thread(self._combine, data, len(results))
        export_error = await self.rundir.export_program(model)
        result = combine_results(self.job_id, self.spec, results, metrics, wall, export_error)
        return await self.rundir.write_result(result)

    def _combine(self, data, n_members: int) -> tuple[TrainedModel, dict]:
        """The ensemble of the members' models (written as model.pt) and its metrics."""
        spec, ens = self.spec, self.spec.ensemble
        members = self.rundir.path / "members"
        trained = [load_model(members / str(i) / "model.pt") for i in range(n_members)]
        net = EnsembleNet([m.net for m in trained], ens.combine, spec.model.loss).eval()
        first = trained[0]
        model = TrainedModel(net, first.normalizer, spec.model.loss, first.classes, first.inputs)
        fn = model_loss(spec.model)
        metrics = {
            f"{split}_{k}": v
            for split in ("train", "val", "test")
            for k, v in evaluate(net, *data.split(split)[:2], spec.model.loss, fn).items()
        }
        save_model(self.rundir.path / "model.pt", spec.model, model, data.n_outputs)
        return model, metrics


def _total_progress(latest: dict[int, Progress], total_steps: int) -> Progress:
    """The ensemble's own progress: its members' latest steps and samples summed, out of the
    job's total (every member's steps)."""
    members = list(latest.values())
    losses = [p.train_loss for p in members if p.train_loss is not None]
    return Progress(
        step=sum(p.step for p in members),
        total_steps=total_steps,
        epoch=sum(p.epoch for p in members) / len(members),
        train_loss=sum(losses) / len(losses) if losses else None,
        samples=sum(p.samples for p in members),
        samples_per_s=sum(p.samples_per_s for p in members),
    )


def combine_results(
    job_id: str,
    spec: JobSpec,
    results: list[JobResult],
    metrics: dict[str, Any],
    wall: float,
    export_error: str | None,
) -> JobResult:
    """The ensemble's result: its metrics, the members' totals, and each member's result."""
    reasons = {r.stop_reason for r in results}
    if len(reasons) == 1:
        stop_reason = reasons.pop()
    else:
        stop_reason = "; ".join(f"member {i}: {r.stop_reason}" for i, r in enumerate(results))
    samples = sum(r.samples for r in results)
    final = {k: v for k, v in metrics.items() if k.startswith(("train_", "val_"))}
    return dataclasses.replace(
        results[0],
        job_id=job_id,
        name=spec.name,
        stop_reason=stop_reason,
        steps=sum(r.steps for r in results),
        total_steps=sum(r.total_steps for r in results),
        epochs=sum(r.epochs for r in results) / len(results),
        exported_step=0,
        best_step=None,
        wall_time_s=wall,
        samples=samples,
        samples_per_s=samples / wall if wall > 0 else 0.0,
        **{k: metrics.get(k) for k in _METRICS},
        final_evaluation=final,
        n_params=sum(r.n_params for r in results),
        skipped_updates=sum(r.skipped_updates for r in results),
        workers=[w for r in results for w in r.workers],
        shards=[s for r in results for s in r.shards],
        worker_restarts=sum(r.worker_restarts for r in results),
        restores=sum(r.restores for r in results),
        export_error=export_error,
        curves_error=None,
        members=[r.to_dict() for r in results],
    )


_METRICS = tuple(
    f"{split}_{metric}"
    for metric in ("loss", "accuracy", "auc")
    for split in ("train", "val", "test")
)
