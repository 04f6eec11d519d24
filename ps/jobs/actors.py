"""A job's actors and tasks: create, name, replace and remove its shards (actors) and workers
(Ray tasks, in processes Ray reuses).

Each is named ``ps:<job_id>:<role>[:<i>]`` (tagged ``@<generation>`` after a restore and
``#<restart>`` for a replaced worker, since a dead actor's name is released late): shards are
found by name (a restarted supervisor removes its predecessor's), workers in Ray's state API
(``list_tasks``). A worker task is owned by its supervisor, so it ends when the supervisor dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from ps.jobs.recovery import buffer_removals
from ps.jobs.resolved import ResolvedJob
from ps.protocol import wire
from ps.server.actor import ParameterShard
from ps.server.config import ShardConfig
from ps.server.slices import param_slices
from ps.server.tables import TablesConfig
from workers.worker import WorkerConfig, train_worker

LEFTOVER_TIMEOUT_S = 30
PING_TIMEOUT_S = 15


@functools.cache
def _train_task(fresh_process: bool) -> Any:
    # No retries: a failed worker is the supervisor's to replace (resumed at the right step).
    return ray.remote(max_retries=0, max_calls=1 if fresh_process else 0)(train_worker)


def actor_name(job_id: str, role: str, index: int | None = None) -> str:
    """The name of a job's actor (the supervisor's is ``ps:<job_id>:supervisor``)."""
    return f"ps:{job_id}:{role}" + ("" if index is None else f":{index}")


@dataclass
class Generation:
    """One set of shards and workers; replaced as a whole when a shard is lost.

    Attributes:
        number: 1 for the first set, +1 per restore.
        shards: actor handles, in slice order.
        workers: per worker, the object ref of its running task (None until it is started).
        start_step: the version the shards start at (0, or a checkpoint's).
        start_clocks: the clock each worker resumes at.
    """

    number: int
    shards: list
    workers: list
    start_step: int = 0
    start_clocks: list[int] = field(default_factory=list)


class JobActors:
    """Creates and removes one job's actors.

    Args:
        job_id: the job's id.
        job: the job resolved once (spec, plan, model layout, optimizer).
        train: object refs of the training split (features, targets, ids), put once.
        supervisor: the supervisor's handle (workers report to it).
    """

    def __init__(self, job_id: str, job: ResolvedJob, train: list, supervisor: Any) -> None:
        self.job_id = job_id
        self.job = job
        self.spec, self.plan, self.layout = job.spec, job.plan, job.layout
        spec, layout = job.spec, job.layout
        # With embedding tables a shard may keep rows only (more shards than dense floats).
        self.param_slices = tuple(
            param_slices(layout.n_params, spec.ps.shards, allow_empty=bool(layout.tables))
        )
        self.n_params, self.n_buffers = layout.n_params, layout.n_buffers
        self.train = train
        self._eval_keys = [
            ray.put(layout.shard_eval_keys(i, spec.ps.shards)) for i in range(spec.ps.shards)
        ]
        self.supervisor = supervisor
        self.generations = 0
        self.token: bytes | None = None

    def _name(self, role: str, index: int, number: int, restart: int = 0) -> str:
        # Names must be unique while a dead actor's name is being released: tag generations.
        return (
            actor_name(self.job_id, role, index)
            + ("" if number == 1 else f"@{number}")
            + (f"#{restart}" if restart else "")
        )

    def spawn(self, initial: np.ndarray, saved: list[dict[str, Any]] | None) -> Generation:
        """A new generation of shards (from checkpointed ``saved`` states, or the ``initial``
        state vector: parameters, then buffers); returns without waiting for them to be up.
        Its workers start with :meth:`start_worker`."""
        self.generations += 1
        self.token = secrets.token_bytes(wire.TOKEN_BYTES)  # a new secret per generation
        number, t, ps = self.generations, self.spec.training, self.spec.ps
        shards = [
            ray.remote(ParameterShard)
            .options(
                name=self._name("shard", i, number),
                num_cpus=ps.resources.num_cpus,
                num_gpus=ps.resources.num_gpus,
                max_concurrency=1000,
            )
            .remote(
                self.shard_config(i),
                initial[lo:hi],
                initial[self.n_params :] if i == 0 else None,
                saved[i] if saved else None,
                max(1, int(ps.resources.num_cpus)),
                self._eval_keys[i],
            )
            for i, (lo, hi) in enumerate(self.param_slices)
        ]
        gen = Generation(number, shards, [])
        gen.workers = [None] * t.workers
        gen.start_step = int(saved[0]["version"]) if saved else 0
        # A worker resumes after the last step every shard saw (the others drop the replay).
        gen.start_clocks = [
            min(int(s["last_seq"][i]) for s in saved) if saved else 0 for i in range(t.workers)
        ]
        return gen

    def shard_config(self, index: int) -> ShardConfig:
        lo, hi = self.param_slices[index]
        spec, t = self.spec, self.spec.training
        return ShardConfig(
            index=index,
            optimizer=self.job.optimizer,
            regularization=spec.regularization,
            offset=lo,
            size=hi - lo,
            mode=t.mode,
            workers=t.workers,
            staleness=t.staleness,
            shards=len(self.param_slices),
            max_version=self.plan.total_steps,
            snapshot_every=self.plan.eval_every,
            checkpoint_every=spec.checkpoint.every_steps,
            divergence_threshold=t.divergence_threshold,
            buffers=self.n_buffers if index == 0 else 0,
            buffer_offset=self.n_params,
            token=self.token,
            tables=TablesConfig(
                self.layout.tables,
                spec.sparse_optimizer,
                *t.table_mode,
                seed=spec.seed,
                snapshot_tables=self.layout.whole_tables,
                shards=len(self.param_slices),
            ),
        )

    def start_worker(self, gen: Generation, i: int, start_clock: int, restart: int = 0) -> Any:
        """Start worker ``i`` of ``gen`` at ``start_clock`` (a Ray task named like an actor would
        be); returns the object ref of its :class:`WorkerTotals`."""
        res = self.spec.training.worker_resources
        config = WorkerConfig(
            index=i,
            spec=self.spec,
            rows=self.plan.worker_rows[i],
            inputs=self.layout.inputs,
            n_outputs=self.layout.n_outputs,
            param_slices=self.param_slices,
            batches=self.plan.batches,
            budget=self.plan.worker_budget,
            job_id=self.job_id,
            token=self.token,
            tables=self.layout.tables,
        )
        # A job's user code is imported in processes of its own, never in one reused later.
        task = _train_task(self.spec.model.user_code).options(
            name=self._name("worker", i, gen.number, restart),
            num_cpus=res.num_cpus,
            num_gpus=res.num_gpus,
        )
        gen.workers[i] = task.remote(config, self.train, gen.shards, self.supervisor, start_clock)
        return gen.workers[i]

    @staticmethod
    async def ready(gen: Generation) -> None:
        """Wait until every shard of ``gen`` is up (its constructor ran)."""
        await asyncio.gather(*[a.ping.remote() for a in gen.shards])

    @staticmethod
    async def shards_alive(gen: Generation) -> bool:
        try:
            pings = asyncio.gather(*[s.ping.remote() for s in gen.shards])
            await asyncio.wait_for(pings, PING_TIMEOUT_S)
            return True
        except Exception:  # noqa: BLE001 - dead, unreachable or hung: all mean "lost"
            return False

    @staticmethod
    async def stop_shards(gen: Generation) -> None:
        """Stop updates; waiting pulls and snapshot waits return (dead shards are ignored)."""
        await asyncio.gather(*[s.stop.remote() for s in gen.shards], return_exceptions=True)

    @staticmethod
    async def hand_back_shards(gen: Generation) -> None:
        """Stop the shards where a checkpoint is one whole step on all of them
        (:mod:`ps.server.handoff`); training ends there, as at the last step."""
        holds = await asyncio.gather(
            *[s.hold.remote() for s in gen.shards], return_exceptions=True
        )  # a dead shard: the restore that follows sees the job preempted and stops there
        steps = [step for step in holds if isinstance(step, int)]
        if steps:
            await asyncio.gather(
                *[s.stop_after.remote(max(steps)) for s in gen.shards], return_exceptions=True
            )

    @staticmethod
    async def close(gen: Generation | None) -> None:
        """Close the shards' channels (bounded wait; dead shards are ignored), then kill all."""
        if gen is None:
            return
        closing = asyncio.gather(*[s.close.remote() for s in gen.shards], return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(closing, PING_TIMEOUT_S)
        JobActors.kill(gen)

    @staticmethod
    def kill(gen: Generation | None) -> None:
        if gen is None:
            return
        for i in range(len(gen.workers)):
            JobActors.stop_worker(gen, i)
        for actor in gen.shards:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)

    @staticmethod
    def stop_worker(gen: Generation, i: int) -> None:
        """End worker ``i``'s task if it still runs (its process goes; a finished one is kept)."""
        if gen.workers[i] is not None:
            with contextlib.suppress(Exception):
                ray.cancel(gen.workers[i], force=True)

    async def kill_leftovers(self) -> None:
        """Kill actors of an earlier incarnation of this job (its supervisor died; they may not
        have yet), so that they neither hold names nor train alongside the new ones."""
        prefix = actor_name(self.job_id, "")

        def leftovers() -> list[str]:
            return [
                n
                for n in ray.util.list_named_actors()
                if n.startswith(prefix) and not n.endswith(":supervisor")
            ]

        for name in leftovers():
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(name), no_restart=True)
        deadline = time.monotonic() + LEFTOVER_TIMEOUT_S
        while leftovers() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await self.cleanup_shm()

    async def cleanup_shm(self) -> None:
        """Remove this job's shared-memory buffers on every node (killed workers leave theirs)."""
        refs = buffer_removals(self.job_id)
        # A node that is going away has nothing left to clean: its failure is not the job's.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*refs, return_exceptions=True), 60)
