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
from ps.jobs.errors import JobCancelled
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
from ps.jobs.plan import JobPlan
from ps.jobs.state import JobState
from ps.jobs.supervisor import JobSupervisor
from ps.jobs.usercode import runtime_env
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

    def __init__(self, job_id: str, spec: JobSpec, run_dir: str, resume: bool = False) -> None:
        super().__init__(job_id, spec, run_dir, resume)
        self.children: list = []

    async def cancel(self) -> None:
        self.cancelled = True
        await asyncio.gather(*[c.cancel.remote() for c in self.children], return_exceptions=True)

    def _child(self, index: int):
        spec = self.spec
        name = actor_name(member_id(self.job_id, index), "supervisor")
        with contextlib.suppress(ValueError):  # an earlier incarnation's member
            ray.kill(ray.get_actor(name), no_restart=True)
        return (
            ray.remote(JobSupervisor)
            .options(name=name, num_cpus=0, max_concurrency=1000, runtime_env=runtime_env(spec))
            .remote(
                member_id(self.job_id, index),
                spec.member(index),
                str(self.rundir.path / "members" / str(index)),
                self.resume,
                Member(index, spec.seed, spec.ensemble.bootstrap),
            )
        )

    async def _forward(self, index: int, child) -> None:
        """Relay a member's history into the job's, labelled with its number."""
        cursor, done = 0, False
        while not done:
            events, cursor, done = await child.poll.remote(cursor, 1.0)
            for event in events:
                if isinstance(event, FORWARDED):
                    await self.emit(dataclasses.replace(event, member=index))

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
        started = time.monotonic()
        self.children = [self._child(i) for i in range(members)]
        runs = [asyncio.ensure_future(c.run.remote()) for c in self.children]
        relays = [asyncio.ensure_future(self._forward(i, c)) for i, c in enumerate(self.children)]
        await self.emit(
            StateChanged(
                state=JobState.RUNNING,
                total_steps=plan.total_steps * members,
                steps_per_epoch=plan.steps_per_epoch,
            )
        )
        try:
            results = await self._wait(runs)
        finally:
            await asyncio.gather(*relays, return_exceptions=True)
            for child in self.children:
                with contextlib.suppress(Exception):
                    ray.kill(child, no_restart=True)
        result = await self._finish(data, results, time.monotonic() - started)
        await self.emit(Finished(result=result))
        return result

    async def _wait(self, runs: list) -> list[JobResult]:
        """Every member's result; the first failure (or a cancel) stops the others."""
        done, pending = await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if t.exception() is not None]
        if failed:
            # Whether the job was cancelled is decided before the failure stops the others.
            cancelled = self.cancelled
            await self.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            index = runs.index(failed[0])
            cause = failed[0].exception()
            cause = getattr(cause, "cause", None) or cause
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
    stop_reason = reasons.pop() if len(reasons) == 1 else "; ".join(
        f"member {i}: {r.stop_reason}" for i, r in enumerate(results)
    )  # fmt: skip
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


_METRICS = (
    "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
    "train_auc", "val_auc", "test_auc",
)  # fmt: skip
