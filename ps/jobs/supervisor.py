"""The job supervisor: one Ray actor per job, the only thing that knows the whole job.

It loads the data, builds the initial model, creates the shard and worker actors, evaluates the
parameters at fixed versions, applies early stopping, writes checkpoints and the run directory,
streams events to whoever drives the job, and tears every actor down at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ps.errors import PSError, SpecError
from ps.jobs.plan import JobPlan
from ps.metrics import LATENCY_BUCKETS, STALENESS_BUCKETS, Buckets
from ps.plot import plot_curves
from ps.server.checkpoint import latest_checkpoint, read_checkpoint, write_checkpoint
from ps.server.plan import shard_plan
from ps.server.shard import ParameterShard
from ps.spec import JobSpec, parse_spec
from workers import shm
from workers.data import Dataset, load_dataset, resolve_path
from workers.evaluation import evaluate
from workers.flat import FlatModel
from workers.models import build_network, read_export, save_model
from workers.worker import Worker

TRAIN_EVAL_ROWS = 20_000  # the training-loss curve is measured on at most this many rows
PROGRESS_EVERY_S = 0.25
TELEMETRY_EVERY_S = 1.0


class JobCancelled(PSError):
    pass


class ShardLost(PSError):
    """A parameter-server shard died; training continues from the last checkpoint."""


def actor_name(job_id: str, role: str, index: int | None = None) -> str:
    """Every actor of a job is named after it, so it can be found (and re-attached) by name."""
    return f"ps:{job_id}:{role}" + ("" if index is None else f":{index}")


def prepare(spec: JobSpec, data_root: Path | None = None) -> tuple[Dataset, torch.nn.Sequential]:
    """Load the data and build the seeded initial network: every data-dependent check.

    Raises:
        SpecError: missing file or column, targets that do not fit the loss, wrong output
            units, an ``init_from`` model of another shape.
    """
    data = load_dataset(spec.data, spec.model.loss, spec.seed, data_root)
    torch.manual_seed(spec.seed)
    net = build_network(spec.model, data.n_features, data.n_outputs)
    if spec.model.init_from:
        path = resolve_path(spec.model.init_from, data_root, "model.init_from")
        try:
            net.load_state_dict(read_export(path)["state_dict"])
        except (ValueError, RuntimeError, KeyError) as exc:
            raise SpecError("model.init_from", f"cannot warm-start from {path}: {exc}") from None
    JobPlan.make(spec, len(data.x_train))
    return data, net


class JobSupervisor:
    """Runs one job to the end. Created with ``ray.remote(JobSupervisor)`` (an asyncio actor).

    Args:
        job_id: the job's id.
        spec: the validated spec as a dict.
        run_dir: where model.pt, spec.yaml, result.json, metrics.jsonl and checkpoints/ go.
        data_root: relative data paths resolve inside it (None: as given).
    """

    def __init__(
        self,
        job_id: str,
        spec: dict[str, Any],
        run_dir: str,
        data_root: str | None = None,
        resume: bool = False,
    ):
        torch.set_num_threads(1)
        self.job_id = job_id
        self.spec = parse_spec(spec)
        self.run_dir = Path(run_dir)
        self.data_root = Path(data_root) if data_root else None
        self.events: list[dict[str, Any]] = []
        self._new_event: asyncio.Condition | None = None
        self.shards: list = []
        self.workers: list = []
        self.done = False
        self.cancelled = False
        self._reports: dict[int, dict[str, Any]] = {}
        self._samples = 0
        self._last_progress = 0.0
        self._started = time.monotonic()
        self._metrics_file = None
        self._outcome: dict[str, Any] | None = None
        self._worker_hists: dict[int, dict[str, Any]] = {}
        self._workers_finished = 0
        self._checkpoint_hist = Buckets(LATENCY_BUCKETS)
        self.resume = resume
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._bad_evals = 0
        self._generation = 0
        self._start_clocks: list[int] = []
        self._worker_restarts = 0
        self._restores = 0

    # -- events ------------------------------------------------------------------------------
    def _cond(self) -> asyncio.Condition:
        if self._new_event is None:
            self._new_event = asyncio.Condition()
        return self._new_event

    async def _emit(self, event: dict[str, Any]) -> None:
        event = {"time": time.time(), "job_id": self.job_id, **event}
        self.events.append(event)
        if self._metrics_file and event["type"] in (
            "progress",
            "evaluation",
            "restore",
            "worker_restart",
        ):
            self._metrics_file.write(json.dumps(event) + "\n")
            self._metrics_file.flush()
        cond = self._cond()
        async with cond:
            cond.notify_all()

    async def poll(
        self, cursor: int, timeout: float = 1.0
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """Events from ``cursor`` on, waiting up to ``timeout`` s for one; (events, cursor, done)."""
        cond = self._cond()
        async with cond:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    cond.wait_for(lambda: len(self.events) > cursor or self.done), timeout
                )
        return self.events[cursor:], len(self.events), self.done

    def outcome(self) -> dict[str, Any] | None:
        """How the job ended (``result``, or ``error`` and ``cancelled``); None while running."""
        return self._outcome

    async def report(self, report: dict[str, Any]) -> None:
        """Progress from a worker (fire and forget)."""
        self._reports[report["worker"]] = report
        self._worker_hists[report["worker"]] = {
            "pull": report["pull_hist"],
            "push": report["push_hist"],
        }
        self._samples += report["samples"]
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S and not report.get("final"):
            return
        self._last_progress = now
        clocks = [r["clock"] for r in self._reports.values()]
        sync = self.spec.training.mode == "sync"
        step = min(clocks) if sync else sum(clocks)
        losses = [r["loss"] for r in self._reports.values()]
        elapsed = now - self._started
        await self._emit(
            {
                "type": "progress",
                "step": step,
                "epoch": step / self.plan.steps_per_epoch,
                "total_steps": self.plan.total_steps,
                "train_loss": float(np.mean(losses)),
                "samples": self._samples,
                "samples_per_s": self._samples / elapsed if elapsed > 0 else 0.0,
                "grad_norm": report.get("grad_norm"),
                "layer_grad_norms": report.get("layer_grad_norms"),
            }
        )

    # -- telemetry (cumulative figures for Prometheus) ----------------------------------------
    def _telemetry(self, stats: list[dict[str, Any]], samples: int) -> dict[str, Any]:
        hist = {"pull": Buckets(LATENCY_BUCKETS), "push": Buckets(LATENCY_BUCKETS)}
        for worker in self._worker_hists.values():
            for key in hist:
                hist[key].add(worker[key])
        update, staleness = Buckets(LATENCY_BUCKETS), Buckets(STALENESS_BUCKETS)
        rejected: dict[str, int] = {}
        for s in stats:
            update.add(s["update_hist"])
            for reason, n in s["rejected"].items():
                rejected[reason] = rejected.get(reason, 0) + n
        # Every shard sees every push, so one shard's staleness record counts each gradient once.
        for value, n in stats[0]["staleness"].items():
            staleness.observe(int(value), n)
        workers = len(self.workers) or self.spec.training.workers
        return {
            "steps": min(s["version"] for s in stats),
            "samples": samples,
            "learning_rate": stats[0]["lr"],
            "workers": {
                "running": workers - self._workers_finished,
                "finished": self._workers_finished,
            },
            "worker_restarts": self._worker_restarts,
            "restores": self._restores,
            "rejected": rejected,
            "bytes_pushed": sum(s["bytes_pushed"] for s in stats),
            "bytes_pulled": sum(s["bytes_pulled"] for s in stats),
            "histograms": {
                **{k: h.to_dict() for k, h in hist.items()},
                "update": update.to_dict(),
                "staleness": staleness.to_dict(),
                "checkpoint": self._checkpoint_hist.to_dict(),
            },
        }

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(TELEMETRY_EVERY_S)
            stats = await asyncio.gather(*[s.stats.remote() for s in self.shards])
            await self._emit(
                {"type": "telemetry", "telemetry": self._telemetry(stats, self._samples)}
            )

    # -- the job -----------------------------------------------------------------------------
    async def cancel(self) -> None:
        self.cancelled = True
        await asyncio.gather(*[s.stop.remote() for s in self.shards], return_exceptions=True)

    async def run(self) -> dict[str, Any]:
        """Train to the end; returns the result (also written to result.json)."""
        try:
            result = await self._run()
            self._outcome = {"result": result}
            return result
        except JobCancelled:
            self._outcome = {"cancelled": True, "error": "cancelled"}
            raise
        except Exception as exc:
            self._outcome = {"error": f"{type(exc).__name__}: {exc}"}
            raise
        finally:
            self._teardown()
            with contextlib.suppress(Exception):
                await self._cleanup_shm()
            self.done = True
            cond = self._cond()
            async with cond:
                cond.notify_all()

    def _teardown(self) -> None:
        self._kill_actors()
        if self._metrics_file:
            self._metrics_file.close()
            self._metrics_file = None

    def _kill_actors(self) -> None:
        for actor in self.workers + self.shards:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.workers, self.shards = [], []

    def pid(self) -> int:
        return os.getpid()

    async def _kill_leftovers(self) -> None:
        """Kill actors of an earlier incarnation of this job (its supervisor died; they may not
        have yet), so that they neither hold names nor train alongside the new ones."""
        prefix = f"ps:{self.job_id}:"

        def leftovers() -> list[str]:
            return [
                n
                for n in ray.util.list_named_actors()
                if n.startswith(prefix) and not n.endswith(":supervisor")
            ]

        for name in leftovers():
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(name), no_restart=True)
        deadline = time.monotonic() + 30
        while leftovers() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await self._cleanup_shm()

    async def _cleanup_shm(self) -> None:
        """Remove this job's shared-memory buffers on every node (killed workers leave theirs)."""
        prefix = shm.prefix(self.job_id)
        unlink = ray.remote(num_cpus=0)(shm.unlink_prefix)
        refs = [
            unlink.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(prefix)
            for n in ray.nodes()
            if n["Alive"]
        ]
        # A node that is going away has nothing left to clean: its failure is not the job's.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*refs, return_exceptions=True), 60)

    async def _run(self) -> dict[str, Any]:
        spec, t = self.spec, self.spec.training
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "spec.yaml").write_text(spec.to_yaml())
        ckpt_root = self.run_dir / "checkpoints"
        checkpoint = latest_checkpoint(ckpt_root) if self.resume else None
        if not self.resume:
            shutil.rmtree(ckpt_root, ignore_errors=True)  # an earlier run's output in this dir
        self._open_history(checkpoint)
        await self._emit({"type": "state", "state": "STARTING"})

        await self._kill_leftovers()
        data, net = prepare(spec, self.data_root)
        self.data = data
        self.net, self.flat = net, FlatModel(net)
        self.plan = plan = JobPlan.make(spec, len(data.x_train))
        self.bounds = shard_plan(self.flat.params.numel(), spec.ps.shards)
        self.initial = self.flat.params.numpy().copy()
        self.train_refs = [ray.put(data.x_train), ray.put(data.y_train)]
        restores = 0
        while True:
            start = await self._start_actors(checkpoint)
            if self.cancelled:
                raise JobCancelled(f"job {self.job_id} was cancelled")
            self._started = time.monotonic()
            await self._emit(
                {
                    "type": "state",
                    "state": "RUNNING",
                    "total_steps": plan.total_steps,
                    "start_step": start,
                    "steps_per_epoch": plan.steps_per_epoch,
                    "n_params": self.flat.params.numel(),
                }
            )
            try:
                stop_reason, worker_totals = await self._train(plan, start)
                break
            except ShardLost as exc:
                restores += 1
                self._restores = restores
                if restores > t.max_failures:
                    raise PSError(
                        f"a parameter-server shard failed {restores} times (training.max_failures="
                        f"{t.max_failures}); last: {exc}"
                    ) from None
                self._kill_actors()
                checkpoint = latest_checkpoint(ckpt_root)
                await self._restore_history(checkpoint, f"shard lost: {exc}")
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled")
        return await self._finish(stop_reason, worker_totals)

    # -- actors ------------------------------------------------------------------------------
    async def _start_actors(self, checkpoint: Path | None) -> int:
        """Create the shards (from ``checkpoint`` if given) and workers; returns the start step."""
        spec, t, plan = self.spec, self.spec.training, self.plan
        saved: list[dict[str, Any]] = []
        if checkpoint is not None:
            meta, saved = read_checkpoint(checkpoint)
            if len(saved) != len(self.bounds):
                raise PSError(
                    f"{checkpoint} has {len(saved)} shards, the job has {len(self.bounds)}"
                )
            self._load_best(checkpoint, meta)
        ps_res = spec.ps.resources
        self._generation += 1
        self.shards = [
            ray.remote(ParameterShard)
            .options(
                name=actor_name(self.job_id, "shard", i) + self._suffix(),
                num_cpus=ps_res.num_cpus,
                num_gpus=ps_res.num_gpus,
                max_concurrency=1000,
            )
            .remote(
                num_threads=max(1, int(ps_res.num_cpus)),
                index=i,
                params=self.initial[lo:hi],
                optimizer=spec.optimizer,
                regularization=spec.regularization,
                total_steps=plan.total_steps,
                mode=t.mode,
                workers=t.workers,
                staleness=t.staleness,
                shards=len(self.bounds),
                max_version=plan.total_steps,
                snapshot_every=plan.eval_every,
                checkpoint_every=spec.checkpoint.every_steps,
                divergence_threshold=t.divergence_threshold,
                offset=lo,
                restore=saved[i] if saved else None,
            )
            for i, (lo, hi) in enumerate(self.bounds)
        ]
        self.workers = [self._make_worker(i) for i in range(t.workers)]
        await asyncio.gather(*[a.ping.remote() for a in self.shards + self.workers])
        if plan.total_steps == 0:
            await asyncio.gather(*[s.stop.remote() for s in self.shards])
        self._start_clocks = [
            min(int(s["last_seq"][i]) for s in saved) if saved else 0 for i in range(t.workers)
        ]
        return int(saved[0]["version"]) if saved else 0

    def _suffix(self) -> str:
        # Names must be unique while a dead actor's name is being released: tag restarts.
        return "" if self._generation == 1 else f"@{self._generation}"

    def _make_worker(self, i: int, restart: int = 0):
        t = self.spec.training
        res = t.worker_resources
        name = (
            actor_name(self.job_id, "worker", i)
            + self._suffix()
            + (f"#{restart}" if restart else "")
        )
        return (
            ray.remote(Worker)
            .options(name=name, num_cpus=res.num_cpus, num_gpus=res.num_gpus)
            .remote(
                index=i,
                spec=self.spec.to_dict(),
                train=self.train_refs,
                bounds=self.plan.worker_bounds[i],
                n_inputs=self.data.n_features,
                n_outputs=self.data.n_outputs,
                plan=self.bounds,
                shards=self.shards,
                supervisor=ray.get_runtime_context().current_actor,
                batches=self.plan.batches,
                budget=self.plan.worker_budget,
                num_threads=max(1, int(res.num_cpus)),
                job_id=self.job_id,
            )
        )

    async def _shards_alive(self) -> bool:
        try:
            await asyncio.wait_for(asyncio.gather(*[s.ping.remote() for s in self.shards]), 15)
            return True
        except Exception:  # noqa: BLE001 - dead, unreachable or hung: all mean "lost"
            return False

    # -- training ----------------------------------------------------------------------------
    async def _train(self, plan: JobPlan, start: int) -> tuple[str, list[dict[str, Any]]]:
        """Run the workers and the watcher until training stops; a dead shard raises ShardLost."""
        self._workers_finished = 0
        runs = [self._run_worker(i, self._start_clocks[i]) for i in range(len(self.workers))]
        finished = asyncio.ensure_future(self._await_workers(runs))
        watch = asyncio.ensure_future(self._watch(plan, start))
        telemetry = asyncio.ensure_future(self._telemetry_loop())
        try:
            await asyncio.wait({finished, watch}, return_when=asyncio.FIRST_EXCEPTION)
            for task in (finished, watch):
                if task.done() and task.exception() is not None:
                    raise task.exception()
            stop_reason = await watch
            worker_totals = await finished
        except ray.exceptions.RayActorError as exc:
            raise ShardLost(str(exc).splitlines()[0]) from None
        finally:
            for task in (finished, watch, telemetry):
                task.cancel()
        diverged = [
            s
            for s in await asyncio.gather(*[s.stats.remote() for s in self.shards])
            if s["diverged"]
        ]
        if diverged:
            raise PSError(diverged[0]["diverged"])
        return stop_reason, worker_totals

    async def _run_worker(self, i: int, start: int) -> dict[str, Any]:
        """Run worker ``i`` to the end, replacing it (same data, resumed step) if it dies."""
        restarts = 0
        while True:
            try:
                totals = await self.workers[i].run.remote(start)
                break
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                if self.cancelled:
                    raise JobCancelled(f"job {self.job_id} was cancelled") from None
                if not await self._shards_alive():
                    raise ShardLost(f"while worker {i} ran: {str(exc).splitlines()[0]}") from None
                restarts += 1
                if restarts > self.spec.training.max_failures:
                    raise PSError(
                        f"worker {i} failed {restarts} times (training.max_failures="
                        f"{self.spec.training.max_failures}); last: {str(exc).splitlines()[0]}"
                    ) from None
                with contextlib.suppress(Exception):
                    ray.kill(self.workers[i], no_restart=True)
                # Resume after the last step every shard has seen; the others drop the replay.
                start = min(await asyncio.gather(*[s.worker_clock.remote(i) for s in self.shards]))
                self._worker_restarts += 1
                self.workers[i] = self._make_worker(i, restarts)
                await self._emit(
                    {
                        "type": "worker_restart",
                        "worker": i,
                        "step": start,
                        "reason": str(exc).splitlines()[0],
                    }
                )
        self._workers_finished += 1
        self._worker_hists[i] = {"pull": totals["pull_hist"], "push": totals["push_hist"]}
        return totals

    async def _await_workers(self, runs: list) -> list[dict[str, Any]]:
        try:
            return await asyncio.gather(*runs)
        finally:
            # Whatever happened, the shards stop: snapshots waited on resolve, pulls return.
            await asyncio.gather(*[s.stop.remote() for s in self.shards], return_exceptions=True)

    async def _watch(self, plan: JobPlan, start: int) -> str:
        """Evaluate and checkpoint at their versions until training stops; returns why it did."""
        every_ckpt = self.spec.checkpoint.every_steps
        versions = sorted(
            v
            for v in set(range(plan.eval_every, plan.total_steps + 1, plan.eval_every))
            | set(range(every_ckpt, plan.total_steps + 1, every_ckpt))
            if v > start
        )
        es = self.spec.training.early_stopping
        for v in versions:
            snaps = await asyncio.gather(*[s.wait_snapshot.remote(v) for s in self.shards])
            if any(s is None for s in snaps):
                break
            params = np.concatenate([s["params"] for s in snaps])
            if v % plan.eval_every == 0:
                ev = await self._evaluate(v, params, snaps[0]["lr"])
                if es is not None:
                    value = ev[es.monitor]  # the monitor names are evaluation keys
                    if self.best is None or _improves(value, self.best["value"], es):
                        self.best = {"step": v, "value": value, "params": params}
                        self._bad_evals = 0
                    else:
                        self._bad_evals += 1
                    if self._bad_evals >= es.patience:
                        await asyncio.gather(*[s.stop.remote() for s in self.shards])
                        if v % every_ckpt == 0:
                            self._checkpoint(v, snaps)
                        return "early_stopping"
            if v % every_ckpt == 0:
                self._checkpoint(v, snaps)
        return "cancelled" if self.cancelled else "completed"

    # -- checkpoints and history -------------------------------------------------------------
    def _checkpoint(self, version: int, snaps: list[dict[str, Any]]) -> None:
        shards = [
            {
                "version": s["version"],
                "params": torch.from_numpy(s["params"]),
                "optimizer": s["optimizer"],
                "clocks": s["clocks"],
                "last_seq": s["last_seq"],
            }
            for s in snaps
        ]
        meta = {
            "job_id": self.job_id,
            "best_step": self.best["step"] if self.best else None,
            "best_value": self.best["value"] if self.best else None,
            "bad_evaluations": self._bad_evals,
            "evaluations": len(self.history),
        }
        extra = {"best.pt": {"params": torch.from_numpy(self.best["params"])}} if self.best else {}
        t0 = time.perf_counter()
        write_checkpoint(
            self.run_dir / "checkpoints", version, shards, meta, self.spec.checkpoint.keep, extra
        )
        self._checkpoint_hist.observe(time.perf_counter() - t0)

    def _load_best(self, checkpoint: Path, meta: dict[str, Any]) -> None:
        self._bad_evals = int(meta.get("bad_evaluations", 0))
        self.best = None
        if meta.get("best_step") is not None and (checkpoint / "best.pt").is_file():
            best = torch.load(checkpoint / "best.pt", weights_only=True)
            self.best = {
                "step": meta["best_step"],
                "value": meta["best_value"],
                "params": best["params"].numpy(),
            }

    def _open_history(self, checkpoint: Path | None) -> None:
        """Open metrics.jsonl: fresh, or (resuming) keeping what happened up to the checkpoint."""
        path = self.run_dir / "metrics.jsonl"
        kept: list[str] = []
        if checkpoint is not None and path.is_file():
            version = int(checkpoint.name.split("-")[1])
            for line in path.read_text().splitlines():
                event = json.loads(line)
                if event.get("step", 0) <= version or event["type"] == "restore":
                    kept.append(line)
                    if event["type"] == "evaluation":
                        self.history.append(event)
        self._metrics_file = path.open("w")
        for line in kept:
            self._metrics_file.write(line + "\n")
        self._metrics_file.flush()

    async def _restore_history(self, checkpoint: Path | None, reason: str) -> None:
        version = int(checkpoint.name.split("-")[1]) if checkpoint else 0
        self.history = [e for e in self.history if e["step"] <= version]
        if checkpoint is None:
            self.best, self._bad_evals = None, 0
        await self._emit({"type": "restore", "step": version, "reason": reason})

    async def _evaluate(self, step: int, params: np.ndarray, lr: float) -> dict[str, Any]:
        d, loss = self.data, self.spec.model.loss
        np.copyto(self.flat.params.numpy(), params)
        train = evaluate(self.net, d.x_train[:TRAIN_EVAL_ROWS], d.y_train[:TRAIN_EVAL_ROWS], loss)
        val = evaluate(self.net, d.x_val, d.y_val, loss)
        gap = None if val["loss"] is None else val["loss"] - train["loss"]
        event = {
            "type": "evaluation",
            "step": step,
            "epoch": self.plan.epoch_at(step),
            "learning_rate": lr,
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "generalization_gap": gap,
            "elapsed_s": time.monotonic() - self._started,
        }
        self.history.append(event)
        await self._emit(event)
        return event

    async def _finish(
        self, stop_reason: str, worker_totals: list[dict[str, Any]]
    ) -> dict[str, Any]:
        finals = await asyncio.gather(*[s.final.remote() for s in self.shards])
        stats = await asyncio.gather(*[s.stats.remote() for s in self.shards])
        params = np.concatenate([f["params"] for f in finals])
        version = finals[0]["version"]
        if version < self.plan.total_steps and stop_reason == "completed":
            stop_reason = "workers_finished"
        if version == self.plan.total_steps and stop_reason == "completed":
            stop_reason = "max_steps" if self.spec.training.max_steps == version else "epochs"
        if not self.history or self.history[-1]["step"] != version:
            await self._evaluate(version, params, stats[0]["lr"])
        final_eval = self.history[-1]
        exported_step = version
        es = self.spec.training.early_stopping
        if es is not None and es.restore_best and self.best is not None:
            params, exported_step = self.best["params"], self.best["step"]
        np.copyto(self.flat.params.numpy(), params)
        d = self.data
        test = evaluate(self.net, d.x_test, d.y_test, self.spec.model.loss)
        train = evaluate(
            self.net, d.x_train[:TRAIN_EVAL_ROWS], d.y_train[:TRAIN_EVAL_ROWS], self.spec.model.loss
        )
        val = evaluate(self.net, d.x_val, d.y_val, self.spec.model.loss)
        save_model(
            self.run_dir / "model.pt",
            self.spec.model,
            self.net,
            d.n_features,
            d.n_outputs,
            torch.from_numpy(d.shift),
            torch.from_numpy(d.scale),
            d.classes,
        )
        wall = time.monotonic() - self._started
        samples = sum(w["samples"] for w in worker_totals)
        rejected: dict[str, int] = {}
        staleness: dict[int, int] = {}
        for s in stats:
            for k, n in s["rejected"].items():
                rejected[k] = rejected.get(k, 0) + n
        for k, n in stats[0]["staleness"].items():
            staleness[int(k)] = staleness.get(int(k), 0) + n
        result = {
            "job_id": self.job_id,
            "name": self.spec.name,
            "state": "SUCCEEDED",
            "stop_reason": stop_reason,
            "steps": version,
            "epochs": self.plan.epoch_at(version),
            "exported_step": exported_step,
            "best_step": self.best["step"] if self.best else None,
            "wall_time_s": wall,
            "samples": samples,
            "samples_per_s": samples / wall if wall > 0 else 0.0,
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "final_evaluation": final_eval,
            "n_params": int(params.size),
            "rejected_gradients": rejected,
            "staleness": dict(sorted(staleness.items())),
            "workers": worker_totals,
            "worker_restarts": self._worker_restarts,
            "restores": self._restores,
            "shards": [
                {k: v for k, v in s.items() if k not in ("staleness", "version_lag")} for s in stats
            ],
        }
        (self.run_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
        if self._metrics_file:
            self._metrics_file.flush()
        try:
            plot_curves(self.run_dir, self.run_dir / "curves.png")
        except Exception as exc:  # noqa: BLE001 - a plotting problem must not fail a trained job
            result["curves_error"] = str(exc)
        await self._emit({"type": "telemetry", "telemetry": self._telemetry(stats, samples)})
        await self._emit({"type": "result", "result": result})
        return result


def _improves(value: float | None, best: float | None, es) -> bool:
    if value is None:
        return False
    if best is None:
        return True
    if es.monitor == "val_accuracy":
        return value > best + es.min_delta
    return value < best - es.min_delta
