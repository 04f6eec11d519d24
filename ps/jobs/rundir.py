"""A job's run directory: spec.yaml, metrics.jsonl, checkpoints/, result.json, curves.png.

The history in ``metrics.jsonl`` always describes the training that produced the current
parameters: after a restore (or a resume) from the checkpoint at step S, whatever was recorded
after S is dropped, so no evaluation appears twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ps.jobs.events import HISTORY_KINDS, Event, JobResult
from ps.jobs.hooks import pause_at
from ps.jobs.snapshot import ModelState
from ps.plot import plot_curves
from ps.server.checkpoint import (
    checkpoint_step,
    latest_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from ps.spec import JobSpec
from workers.models import TrainedModel, export_program


def preload_finishing() -> None:
    """Import matplotlib and torch.export in a background thread: a second of imports the end
    of the job need not wait for (they overlap the actors' start). Only for a job whose end runs
    in the supervisor (see :class:`RunDirectory`)."""

    def load() -> None:
        with contextlib.suppress(Exception):
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot  # noqa: F401
            import torch._dynamo  # noqa: F401
            import torch.export  # noqa: F401

    threading.Thread(target=load, name="preload-finishing", daemon=True).start()


def _export(model: TrainedModel, path: str) -> str | None:
    """Write model.pt2; returns why not, if it cannot be."""
    try:
        export_program(model, path)
    except Exception as exc:  # noqa: BLE001 - some user modules do not export; model.pt stays
        return f"model.pt2 not written: {type(exc).__name__}: {str(exc)[:300]}"
    return None


def _plot(run_dir: str) -> str | None:
    """Draw curves.png; returns why not, if it cannot be (a plotting problem is never fatal)."""
    try:
        plot_curves(run_dir, Path(run_dir) / "curves.png")
    except Exception as exc:  # noqa: BLE001 - a plotting problem must not fail a trained job
        return str(exc)
    return None


@functools.cache
def _remote(fn: Callable[..., Any]) -> Any:
    return ray.remote(num_cpus=0, max_retries=0)(fn)


async def _on_this_node(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` as a Ray task on this node. Ray keeps task worker processes and reuses them,
    so the second of torch.export and matplotlib imports is paid once per worker process rather
    than once per job (a supervisor is a fresh process)."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return await _remote(fn).options(scheduling_strategy=here).remote(*args)


class RunDirectory:
    """Everything a job writes, in one directory.

    The export and the plot at the end run in a reusable Ray task on this node, except for a
    job with user code: its modules are imported in its own processes only, never in a worker
    another job reuses.

    Args:
        path: the run directory (created).
        spec: the job's spec (written as ``spec.yaml``).
    """

    def __init__(self, path: Path, spec: JobSpec) -> None:
        self.path = Path(path)
        self.spec = spec
        self.finish_here = spec.model.user_code
        self.checkpoints = self.path / "checkpoints"
        self._history: IO[str] | None = None
        self.evaluations: list[dict[str, Any]] = []  # the evaluations kept by the last rewind

    def open(self, resume: bool) -> Path | None:
        """Start writing: a fresh run clears an earlier run's output; a resumed one continues
        from its newest complete checkpoint (returned) with the history up to it."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "spec.yaml").write_text(self.spec.to_yaml())
        checkpoint = latest_checkpoint(self.checkpoints) if resume else None
        if not resume:
            shutil.rmtree(self.checkpoints, ignore_errors=True)
        self.rewind(checkpoint_step(checkpoint) if checkpoint else None)
        return checkpoint

    def rewind(self, step: int | None) -> list[dict[str, Any]]:
        """Keep the history up to ``step`` (None: nothing) and continue after it; returns the
        evaluations kept."""
        path = self.path / "metrics.jsonl"
        kept: list[str] = []
        if step is not None and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
                if event.get("step", 0) <= step or event.get("type") == "restore":
                    kept.append(line)
        self.close()
        self._history = path.open("w")
        for line in kept:
            self._history.write(line + "\n")
        self._history.flush()
        events = [json.loads(line) for line in kept]
        self.evaluations = [e for e in events if e.get("type") == "evaluation"]
        return self.evaluations

    def record(self, event: Event) -> None:
        """Append ``event`` to metrics.jsonl if it belongs to the history."""
        if self._history is not None and isinstance(event, HISTORY_KINDS):
            self._history.write(event.to_json() + "\n")
            self._history.flush()

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None

    # -- checkpoints -------------------------------------------------------------------------
    def write_checkpoint(
        self,
        version: int,
        shard_states: list[dict[str, Any]],
        meta: dict[str, Any],
        best: ModelState | None,
    ) -> float:
        """Write one whole-job checkpoint atomically; returns the seconds it took."""
        pause_at("checkpoint")
        t0 = time.perf_counter()
        extra = {"best.pt": best.to_saved()} if best is not None else {}
        write_checkpoint(
            self.checkpoints, version, shard_states, meta, self.spec.checkpoint.keep, extra
        )
        return time.perf_counter() - t0

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.checkpoints)

    @staticmethod
    def read_checkpoint(checkpoint: Path) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
        """(meta, shard states, best state or None) of a checkpoint directory."""
        meta, states = read_checkpoint(checkpoint)
        best = None
        if meta.get("best_step") is not None and (checkpoint / "best.pt").is_file():
            best = ModelState.from_saved(torch.load(checkpoint / "best.pt", weights_only=True))
        return meta, states, best

    # -- the end -----------------------------------------------------------------------------
    async def _finishing(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.finish_here:
            return await asyncio.to_thread(fn, *args)
        return await _on_this_node(fn, *args)

    async def export_program(self, model: TrainedModel) -> str | None:
        """Write model.pt2 (a torch.export program); returns why not, if it cannot be."""
        return await self._finishing(_export, model, str(self.path / "model.pt2"))

    async def write_result(self, result: JobResult) -> JobResult:
        """Write result.json, then curves.png (a plotting problem is noted, never fatal)."""
        if self._history is not None:
            self._history.flush()
        path = self.path / "result.json"
        path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
        curves_error = await self._finishing(_plot, str(self.path))
        if curves_error is not None:
            result = dataclasses.replace(result, curves_error=curves_error)
            path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
        return result
