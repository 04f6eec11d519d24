"""How a job's last generation of actors ends: :func:`finish` (the final evaluation, the exported
model, the result) or :func:`hand_back` (a checkpoint of where the stopped shards are, for the job
to resume from when it is started again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from ps.jobs.actors import Generation
from ps.jobs.attempt import AttemptOutcome, JobContext
from ps.jobs.errors import JobPreempted
from ps.jobs.events import Finished, JobResult, Telemetry
from ps.jobs.results import make_result
from ps.jobs.snapshot import join_state
from ps.server.checkpoint import checkpoint_step


async def hand_back(ctx: JobContext, gen: Generation) -> None:
    """Checkpoint the stopped shards of ``gen`` where they are and raise :class:`JobPreempted`;
    returns (and the job finishes instead) when training had already reached its last step."""
    taken = await asyncio.gather(*[s.checkpoint.remote() for s in gen.shards])
    step = min(int(t["version"]) for t in taken)
    if step >= ctx.job.plan.total_steps:
        return
    latest = ctx.rundir.latest_checkpoint()
    # Else the checkpoint it started from, or a periodic one just written, is this one.
    if step > gen.start_step and (latest is None or checkpoint_step(latest) != step):
        meta, best = ctx.evaluator.state()
        states = [t["state"] for t in taken]
        await asyncio.to_thread(ctx.rundir.write_checkpoint, step, states, meta, best)
    raise JobPreempted(f"stopped at step {step} to go back to the queue (checkpointed)")


async def finish(
    ctx: JobContext, gen: Generation, job_id: str, n_outputs: int, outcome: AttemptOutcome
) -> JobResult:
    """Evaluate the final state (unless its step was just evaluated), export the model and
    write the result; emits the last telemetry and ``Finished``."""
    figures, evaluator, rundir = ctx.figures, ctx.evaluator, ctx.rundir
    wall = time.monotonic() - figures.started  # training only, not what follows
    finals = await asyncio.gather(*[s.final.remote() for s in gen.shards])
    stats = await asyncio.gather(*[s.stats.remote() for s in gen.shards])
    state = join_state(finals)
    version = min(f["version"] for f in finals)
    # Evaluation and saving run off the event loop: polls and cancels stay answered.
    if evaluator.last is None or evaluator.last.step != version:
        elapsed = time.monotonic() - figures.started
        ev = await asyncio.to_thread(evaluator.evaluate, version, state, stats[0].lr, elapsed)
        await ctx.emit(ev)
    exported_step, final, model = await asyncio.to_thread(
        evaluator.finish, state, version, rundir.path / "model.pt", n_outputs
    )
    export_error = await rundir.export_program(model)
    result = make_result(
        job_id,
        ctx.job.spec,
        ctx.job.plan,
        outcome,
        stats,
        version,
        exported_step,
        evaluator,
        final,
        wall,
        ctx.budget,
    )
    result = await rundir.write_result(dataclasses.replace(result, export_error=export_error))
    samples = sum(t.samples for t in outcome.totals)
    await ctx.emit(Telemetry(figures=figures.snapshot(stats, samples)))
    await ctx.emit(Finished(result=result))
    return result
