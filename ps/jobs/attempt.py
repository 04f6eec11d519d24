"""One training attempt: a generation of actors trained until done, stopped, or a shard is lost.

Everything an attempt starts (worker runs, the snapshot watcher, the telemetry loop) belongs to
its own generation of actors and is cancelled *and awaited* before :meth:`Attempt.run` returns or
raises. So nothing of a lost generation can act on the next one: no late ``stop`` reaches the
restored shards, and no stale worker replacement overwrites a new worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import ray

from ps.jobs.actors import Generation, JobActors
from ps.jobs.errors import JobCancelled, ShardLost
from ps.jobs.evaluator import Evaluator
from ps.jobs.events import Event, Telemetry, WorkerReplaced
from ps.jobs.failures import FailureBudget
from ps.jobs.resolved import ResolvedJob
from ps.jobs.rundir import RunDirectory
from ps.jobs.snapshot import join_state
from ps.jobs.telemetry import JobFigures
from workers.worker import WorkerTotals

TELEMETRY_EVERY_S = 1.0

COMPLETED, EARLY_STOPPING, CANCELLED = "completed", "early_stopping", "cancelled"


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended: ``completed`` (the workers spent their budgets or the shards
    reached the last step), ``early_stopping`` or ``cancelled``; and what each worker did."""

    stop_reason: str
    totals: list[WorkerTotals]


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@dataclass(frozen=True)
class JobContext:
    """What every attempt of one job works with (built once by the supervisor).

    Attributes:
        job: the job resolved once (spec, plan, layout, optimizer).
        actors: makes shards and (replacement) workers.
        evaluator / rundir / figures: where evaluations, checkpoints and figures go.
        budget: the failure policy.
        emit: sends an event (to watchers and the history).
        cancelled: whether the job was cancelled.
    """

    job: ResolvedJob
    actors: JobActors
    evaluator: Evaluator
    rundir: RunDirectory
    figures: JobFigures
    budget: FailureBudget
    emit: Callable[[Event], Awaitable[None]]
    cancelled: Callable[[], bool]


class Attempt:
    """Runs one :class:`Generation` of a job (``gen``: its actors; workers may be replaced in
    it), with the job's :class:`JobContext`."""

    def __init__(self, ctx: JobContext, gen: Generation) -> None:
        self.spec, self.plan, self.gen, self.actors = ctx.job.spec, ctx.job.plan, gen, ctx.actors
        self.evaluator, self.rundir, self.figures = ctx.evaluator, ctx.rundir, ctx.figures
        self.budget, self.emit, self.cancelled = ctx.budget, ctx.emit, ctx.cancelled

    async def run(self) -> AttemptOutcome:
        """Train to the end of this attempt.

        Raises:
            ShardLost: a shard died (the caller restores from the last checkpoint).
            JobCancelled, FailureBudgetSpent: as their names say.
        """
        workers = [asyncio.ensure_future(self._run_worker(i)) for i in range(len(self.gen.workers))]
        finished = asyncio.ensure_future(self._workers_then_stop(workers))
        watch = asyncio.ensure_future(self._watch())
        telemetry = asyncio.ensure_future(self._telemetry_loop())
        everything = [*workers, finished, watch, telemetry]
        try:
            await asyncio.wait({finished, watch}, return_when=asyncio.FIRST_EXCEPTION)
            for task in (finished, watch):
                if task.done() and task.exception() is not None:
                    raise task.exception()
            return AttemptOutcome(await watch, await finished)
        except ray.exceptions.RayActorError as exc:
            raise ShardLost(first_line(exc)) from None
        finally:
            for task in everything:
                task.cancel()
            await asyncio.gather(*everything, return_exceptions=True)

    async def _workers_then_stop(self, workers: list[asyncio.Future]) -> list[WorkerTotals]:
        try:
            return await asyncio.gather(*workers)
        finally:
            # Whatever happened, this generation's shards stop: snapshot waits resolve.
            await JobActors.stop_shards(self.gen)

    async def _run_worker(self, i: int) -> WorkerTotals:
        """Run worker ``i`` to the end, replacing it (same rows, resumed step) if it dies."""
        start, restart = self.gen.start_clocks[i], 0
        while True:
            try:
                totals = await self.actors.start_worker(self.gen, i, start, restart)
                self.figures.worker_done(totals)
                return totals
            except ray.exceptions.RayError as exc:  # it raised, its process died, or its node
                cause = first_line(exc)
                if self.cancelled():
                    raise JobCancelled("the job was cancelled") from None
                if not await JobActors.shards_alive(self.gen):
                    raise ShardLost(f"while worker {i} ran: {cause}") from None
                restart = self.budget.worker_failed(i, cause)
                self.figures.worker_restarts = self.budget.worker_restarts
                JobActors.stop_worker(self.gen, i)
                # Resume after the last step every shard has seen; the others drop the replay.
                clocks = [s.worker_clock.remote(i) for s in self.gen.shards]
                start = min(await asyncio.gather(*clocks))
                await self.emit(WorkerReplaced(worker=i, step=start, reason=cause))

    async def _watch(self) -> str:
        """Evaluate and checkpoint at their versions until training stops; returns why it did."""
        plan, every = self.plan, self.spec.checkpoint.every_steps
        due = set(range(plan.eval_every, plan.total_steps + 1, plan.eval_every))
        due |= set(range(every, plan.total_steps + 1, every))
        for v in sorted(v for v in due if v > self.gen.start_step):
            snaps = await asyncio.gather(*[s.wait_snapshot.remote(v) for s in self.gen.shards])
            if any(s is None for s in snaps):
                break
            state = join_state(snaps)
            stop = False
            if v % plan.eval_every == 0:
                elapsed = time.monotonic() - self.figures.started
                ev = await asyncio.to_thread(
                    self.evaluator.evaluate, v, state, snaps[0]["lr"], elapsed
                )
                await self.emit(ev)
                stop = self.evaluator.should_stop(ev, state)
            if v % every == 0:
                meta, best = self.evaluator.state()
                seconds = await asyncio.to_thread(
                    self.rundir.write_checkpoint, v, [s["state"] for s in snaps], meta, best
                )
                self.figures.checkpoint_written(seconds)
            if stop:
                await JobActors.stop_shards(self.gen)
                return EARLY_STOPPING
        return CANCELLED if self.cancelled() else COMPLETED

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(TELEMETRY_EVERY_S)
            stats = await asyncio.gather(*[s.stats.remote() for s in self.gen.shards])
            await self.emit(Telemetry(figures=self.figures.snapshot(stats)))
