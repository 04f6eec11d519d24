"""The job supervisor: one Ray actor per job, the only thing that knows the whole job.

It tells the job's story and asks small collaborators for the rest: :mod:`ps.jobs.admission`
loads the data, :mod:`ps.jobs.actors` creates and removes the actors, :mod:`ps.jobs.attempt`
trains one generation of them, :mod:`ps.jobs.evaluator` evaluates and decides early stopping,
:mod:`ps.jobs.rundir` writes the run directory, :mod:`ps.jobs.failures` says what may fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

import ray
import torch

from ps.jobs.actors import Generation, JobActors
from ps.jobs.admission import Member, ledger_items, prepare, training_parts
from ps.jobs.attempt import EARLY_STOPPING, Attempt, AttemptOutcome, JobContext
from ps.jobs.ending import finish, hand_back
from ps.jobs.errors import JobCancelled, JobPreempted, ShardLost
from ps.jobs.evaluator import Evaluator
from ps.jobs.events import Event, JobResult, Restored, StateChanged
from ps.jobs.failures import FailureBudget
from ps.jobs.handle import Outcome
from ps.jobs.ledger import LEDGER_FILE, Ledger
from ps.jobs.resolved import ResolvedJob
from ps.jobs.rundir import RunDirectory, preload_finishing
from ps.jobs.state import JobState
from ps.jobs.telemetry import JobFigures
from ps.server.checkpoint import checkpoint_step
from ps.spec import JobSpec
from workers.worker import WorkerReport


class JobSupervisor:
    """Runs one job to the end. Created with ``ray.remote(JobSupervisor)`` (an asyncio actor).

    Args:
        job_id: the job's id.
        spec: the validated spec (paths already resolved by admission).
        run_dir: where model.pt, spec.yaml, result.json, metrics.jsonl and checkpoints/ go.
        resume: continue from the newest checkpoint in ``run_dir`` (a restarted job).
        member: set when this job is one member of an ensemble (:mod:`ps.jobs.ensemble`).
        attempt: the job store's attempt number this supervisor was started for (a restarted
            service re-attaches only to the supervisor of the job's current attempt).
    """

    def __init__(
        self,
        job_id: str,
        spec: JobSpec,
        run_dir: str,
        resume: bool = False,
        member: Member | None = None,
        attempt: int = 0,
    ) -> None:
        torch.set_num_threads(1)
        self.job_id, self.spec, self.resume, self.member = job_id, spec, resume, member
        self.attempt, self.started = attempt, False
        self.rundir = RunDirectory(Path(run_dir), spec)
        self.events: list[Event] = []
        self._changed: asyncio.Condition | None = None
        self.done = self.cancelled = self.preempted = False
        self._outcome: Outcome | None = None
        self.budget = FailureBudget(spec.training.max_failures)
        self.figures: JobFigures | None = None
        self.gen: Generation | None = None
        self.actors: JobActors | None = None
        self.ledger: Ledger | None = None

    # -- events ------------------------------------------------------------------------------
    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def emit(self, event: Event) -> None:
        event = dataclasses.replace(event, job_id=self.job_id, time=time.time())
        self.events.append(event)
        self.rundir.record(event)
        async with self._cond():
            self._cond().notify_all()

    async def poll(self, cursor: int, timeout: float = 1.0) -> tuple[list[Event], int, bool]:
        """Events from ``cursor`` on, waiting up to ``timeout`` s for one; (events, cursor, done)."""
        cond = self._cond()
        async with cond:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    cond.wait_for(lambda: len(self.events) > cursor or self.done), timeout
                )
        return self.events[cursor:], len(self.events), self.done

    def outcome(self) -> Outcome | None:
        """How the job ended; None while it runs."""
        return self._outcome

    def identity(self) -> tuple[int, bool]:
        """(the attempt it was started for, whether it was handed its job: ``run`` began)."""
        return self.attempt, self.started

    async def report(self, report: WorkerReport) -> None:
        """Progress from a worker (fire and forget)."""
        progress = self.figures.report(report) if self.figures else None
        if progress is not None:
            await self.emit(progress)

    def take_item(self, worker: int) -> int | None:
        """The next work item's ledger position for ``worker`` (async streamed jobs)."""
        return self.ledger.take(worker)

    def given_items(self, worker: int) -> list[int]:
        """The ledger positions ``worker`` was given so far (a replacement continues them)."""
        return self.ledger.positions(worker) if self.ledger is not None else []

    async def cancel(self) -> None:
        self.cancelled = True
        if self.gen is not None:
            await JobActors.stop_shards(self.gen)

    async def preempt(self) -> None:
        """Stop at the current step, checkpoint it and end with a ``preempted`` outcome: the
        job goes back to the queue and resumes from that checkpoint (a job that already
        reached its last step finishes instead)."""
        self.preempted = True
        if self.gen is not None:
            await JobActors.hand_back_shards(self.gen)

    def _may_leave_buffers(self) -> bool:
        """Whether a killed worker may have left shared memory (finished ones remove theirs)."""
        clean = self._outcome is not None and self._outcome.kind == "succeeded"
        return not clean or self.budget.worker_restarts > 0 or self.budget.restores > 0

    # -- the job -----------------------------------------------------------------------------
    async def run(self) -> Outcome:
        """Train to the end; returns how it ended (the result is also in result.json). It never
        raises: a failure is an outcome, read by whoever follows the job
        (:class:`ps.jobs.handle.SupervisorHandle`)."""
        self.started = True
        try:
            self._outcome = Outcome.succeeded(await self._run())
        except JobCancelled:
            self._outcome = Outcome.cancelled()
        except JobPreempted as exc:
            self._outcome = Outcome.preempted(str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure is the job's outcome
            self._outcome = Outcome.failed(exc)
        finally:
            await JobActors.close(self.gen)
            if self.actors is not None and self._may_leave_buffers():
                with contextlib.suppress(Exception):
                    await self.actors.cleanup_shm()
            self.rundir.close()
            self.done = True
            async with self._cond():
                self._cond().notify_all()
        return self._outcome

    async def _run(self) -> JobResult:
        spec = self.spec
        checkpoint = self.rundir.open(self.resume)
        await self.emit(StateChanged(state=JobState.STARTING))
        if self.rundir.finish_here:
            preload_finishing()
        data, net, plan = await asyncio.to_thread(prepare, spec, self.member)
        evaluator = Evaluator(spec, plan, data, net)
        job = ResolvedJob.of(spec, plan, evaluator)
        train = [ray.put(part) for part in training_parts(data)]
        if ledger_items(spec, data):
            path = self.rundir.path / LEDGER_FILE
            self.ledger = Ledger(
                data.stream.train_rows,
                spec.training.epochs,
                spec.training.workers,
                path,
                self.resume,
            )
        self.actors = JobActors(self.job_id, job, train, ray.get_runtime_context().current_actor)
        if self.resume:  # an earlier incarnation of this job may have left actors and buffers
            await self.actors.kill_leftovers()
        t = spec.training
        self.figures = JobFigures(
            t.mode == "sync", plan.steps_per_epoch, plan.total_steps, t.workers
        )
        ctx = JobContext(
            job,
            self.actors,
            evaluator,
            self.rundir,
            self.figures,
            self.budget,
            self.emit,
            lambda: self.cancelled,
        )
        outcome = await self._train(ctx, checkpoint)
        if outcome.stop_reason == "cancelled" or self.cancelled:
            raise JobCancelled("the job was cancelled")
        if self.preempted and outcome.stop_reason != EARLY_STOPPING:
            await hand_back(ctx, self.gen)
        return await finish(ctx, self.gen, self.job_id, data.n_outputs, outcome)

    async def _train(self, ctx: JobContext, checkpoint: Path | None) -> AttemptOutcome:
        """Train generation after generation until one ends: a lost shard restores every actor
        from the last checkpoint (within the failure budget)."""
        plan, evaluator = ctx.job.plan, ctx.evaluator
        initial = evaluator.flat.state.numpy().copy()
        while True:
            saved = None
            if checkpoint is not None:
                meta, saved, best = RunDirectory.read_checkpoint(checkpoint)
                evaluator.load_state(meta, best, self.rundir.evaluations)
            else:
                evaluator.load_state(None, None)
            self.gen = gen = self.actors.spawn(initial, saved)
            await JobActors.ready(gen)
            if plan.total_steps == 0:
                await JobActors.stop_shards(gen)
            if self.cancelled:
                raise JobCancelled("the job was cancelled")
            if self.preempted:
                raise JobPreempted("stopped before training began, to go back to the queue")
            self.figures.restart_clock()
            await self.emit(
                StateChanged(
                    state=JobState.RUNNING,
                    total_steps=plan.total_steps,
                    start_step=gen.start_step,
                    steps_per_epoch=plan.steps_per_epoch,
                    n_params=ctx.job.layout.n_params,
                )
            )
            try:
                return await Attempt(ctx, gen).run()
            except ShardLost as exc:
                self.budget.shard_lost(str(exc))
                self.figures.restores = self.budget.restores
                JobActors.kill(gen)
                checkpoint = self.rundir.latest_checkpoint()
                step = checkpoint_step(checkpoint) if checkpoint else 0
                self.rundir.rewind(step)
                await self.emit(Restored(step=step, reason=f"shard lost: {exc}"))
