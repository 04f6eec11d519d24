"""The worker: pull → forward/backward on its next minibatch → push, until done; one Ray task
(:func:`train_worker`) per worker.

A worker knows its rows of the training data, the parameter slices of the shards and the shard
actors; nothing else. It stops when its step budget is spent or a shard answers ``stop``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import torch

from ps.protocol.buckets import LATENCY_BUCKETS, Buckets
from ps.protocol.messages import TableConfig
from ps.spec import JobSpec
from workers.augment import augment_batch
from workers.data import epoch_batches
from workers.data.assignment import EqualShares, LedgerShares
from workers.data.filesets import load_readers
from workers.data.streams import StreamFeed, StreamSource
from workers.evaluation import forward, model_loss
from workers.flat import state_sizes
from workers.layers import Input
from workers.memory import peak_memory, peak_memory_reset
from workers.mirror import DeviceMirror
from workers.models import build_model
from workers.rowplan import RowPlan
from workers.sparse import RemoteRows, bind, planned_ids, tables_of
from workers.transport import ShardClient, StepPull, StepPush

REPORT_EVERY_S = 0.5
MAX_REPORTED_LAYERS = 64


def step_seed(seed: int, worker: int, clock: int) -> int:
    """Dropout randomness as a function of (seed, worker, step): a replayed step is identical."""
    return (seed * 1_000_003 + worker * 7_919 + clock) % (2**63 - 1)


@dataclass(frozen=True)
class WorkerConfig:
    """What one worker is told, built once by the supervisor.

    Attributes:
        index: worker number (0-based).
        spec: the job's validated spec.
        rows: this worker's ``[lo, hi)`` rows of the training split.
        inputs / n_outputs: what the model takes (per-sample shape) and how many outputs.
        param_slices: each shard's ``[lo, hi)`` slice of the flat parameters, in shard order.
        batches: minibatches per epoch; budget: total steps (clock limit) of this worker.
        job_id: names the worker's shared-memory buffers.
        token: the job's data-plane secret (see :mod:`ps.server.channels`).
        tables: the model's embedding tables (rows on the shards, by key).
    """

    index: int
    spec: JobSpec
    rows: tuple[int, int]
    inputs: Input
    n_outputs: int
    param_slices: tuple[tuple[int, int], ...]
    batches: int
    budget: int
    job_id: str = ""
    token: bytes | None = field(default=None, repr=False)
    tables: tuple[TableConfig, ...] = ()

    @property
    def num_threads(self) -> int:
        return max(1, int(self.spec.training.worker_resources.num_cpus))

    @property
    def device(self) -> str:
        """``cuda`` when the worker asks for a GPU and has one, else ``cpu``."""
        wants = self.spec.training.worker_resources.num_gpus > 0
        return "cuda" if wants and torch.cuda.is_available() else "cpu"


@dataclass
class WorkerReport:
    """Progress since the last report (sent fire-and-forget to the supervisor)."""

    worker: int
    clock: int
    loss: float
    steps: int
    samples: int
    grad_norm: float | None
    pull_hist: dict[str, Any]
    push_hist: dict[str, Any]
    layer_grad_norms: dict[str, float] | None = None
    final: bool = False
    links: list[str] | None = None


@dataclass
class WorkerTotals:
    """What a worker returns when it stops."""

    worker: int
    clock: int
    samples: int
    pull_hist: dict[str, Any]
    push_hist: dict[str, Any]
    acks: dict[str, int] = field(default_factory=dict)
    device: str = "cpu"
    links: list[str] = field(default_factory=list)
    loop_s: float = 0.0  # wall time of the step loop
    peak_rss_bytes: int | None = None  # the process's peak resident memory while it trained
    start_rss_bytes: int | None = None  # ... and its resident memory when it began
    rows_read: int = 0  # streamed rows read from the files
    pull_s: float = 0.0
    compute_s: float = 0.0
    push_s: float = 0.0


class Worker:
    """Computes gradients for its rows of the training data.

    Args:
        config: see :class:`WorkerConfig`.
        train: object refs of the training features, targets and (with categorical features)
            ids, put once by the supervisor; or of one :class:`StreamSource` (streamed data:
            the worker reads its share from the files as it trains).
        shards: the shard actor handles, in slice order.
        supervisor: handle to report progress to.
    """

    def __init__(self, config: WorkerConfig, train: list, shards: list, supervisor: Any) -> None:
        torch.set_num_threads(config.num_threads)
        self.config = config
        self.spec = config.spec
        self.device = torch.device(config.device)
        parts = ray.get(train)  # mapped, not yet read: the copy below is what is measured
        if isinstance(parts[0], StreamSource):
            load_readers()  # library code, not data: before the peak memory is measured
        self.start_rss = peak_memory_reset()
        self.feed: StreamFeed | None = None
        self.x = self.y = self.ids = None
        if isinstance(parts[0], StreamSource):
            self.feed = StreamFeed(parts[0], self._assignment(parts[0], supervisor))
        else:
            lo, hi = config.rows
            # One copy of this worker's rows (on its device); the arrays stay in the object store.
            self.x, self.y, *ids = (
                torch.from_numpy(np.array(a[lo:hi], copy=True)).to(self.device) for a in parts
            )
            self.ids = ids[0] if ids else None
        torch.manual_seed(self.spec.seed)
        self.net = build_model(self.spec.model, config.inputs, config.n_outputs).to(self.device)
        if tables_of(self.net) != config.tables:
            raise RuntimeError("the worker's model has other embedding tables than the job's")
        n_params, n_buffers = state_sizes(self.net)
        t = self.spec.training
        self.transport = ShardClient(
            config.index,
            shards,
            config.param_slices,
            n_params,
            n_buffers,
            config.job_id,
            t.transport,
            t.compression,
            t.topk_ratio,
            config.token,
            shared_memory=t.transport == "auto",
            tables=config.tables,
        )
        self.shards = len(shards)
        self.rows = (
            RemoteRows(self._fetch_rows, self.device, self.shards) if config.tables else None
        )
        bind(self.net, self.rows)
        self._clock = 0
        self.mirror = DeviceMirror(self.net, self.transport.state, self.transport.grads)
        self.flat = self.mirror.flat
        self.loss = model_loss(self.spec.model)
        self.supervisor = supervisor
        self._order: tuple[int, list[torch.Tensor]] | None = None
        self._batch_at: tuple[int, tuple] | None = None  # the latest batch (planned, then used)
        self.pull_hist = Buckets(LATENCY_BUCKETS)
        self.push_hist = Buckets(LATENCY_BUCKETS)

    def _assignment(self, source: StreamSource, supervisor: Any):
        """Which rows each step streams: the ledger's items (async), or equal shares."""
        t, i = self.spec.training, self.config.index
        if t.mode != "async":
            return EqualShares(source, i, t.workers, self.config.batches)
        given = ray.get(supervisor.given_items.remote(i))
        return LedgerShares(
            source, t.batch_size, given, lambda: ray.get(supervisor.take_item.remote(i))
        )

    def _fetch_rows(self, table: int, keys: np.ndarray) -> np.ndarray:
        return self.transport.fetch_rows(self._clock, table, keys)

    def _pull(self, clock: int) -> StepPull | None:
        """The pull of step ``clock`` with the row plan of its batch (None: past the budget)."""
        if clock >= self.config.budget or (self.feed is not None and not self.feed.has(clock)):
            return None
        if self.rows is None:
            return StepPull(clock)
        return StepPull(
            clock, RowPlan.of(planned_ids(self.net, self._batch(clock)[3]), self.shards)
        )

    def _batch(self, clock: int) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor | None]:
        """The minibatch of step ``clock`` (the same tensors for the plan and the step)."""
        if self._batch_at is not None and self._batch_at[0] == clock:
            return self._batch_at[1]
        epoch, b = divmod(clock, self.config.batches)
        if self.feed is not None:
            x, y, ids = (
                None if a is None else torch.from_numpy(a).to(self.device)
                for a in self.feed.batch(clock)
            )
            self._batch_at = (clock, (x, y, epoch, ids))
            return self._batch_at[1]
        if self._order is None or self._order[0] != epoch:
            order = epoch_batches(
                len(self.x),
                self.config.batches,
                self.spec.seed,
                self.config.index,
                epoch,
                self.spec.data.shuffle,
            )
            self._order = (epoch, [torch.from_numpy(i).to(self.device) for i in order])
        idx = self._order[1][b]
        batch = (self.x[idx], self.y[idx], epoch, None if self.ids is None else self.ids[idx])
        self._batch_at = (clock, batch)
        return batch

    def run(self, start_clock: int = 0) -> WorkerTotals:
        """Train from ``start_clock`` until the budget is spent or a shard says stop."""
        try:
            totals = self._run(start_clock)
            totals.peak_rss_bytes, totals.start_rss_bytes = peak_memory(), self.start_rss
            totals.rows_read = self.feed.rows_read if self.feed is not None else 0
            return totals
        finally:
            if self.feed is not None:
                self.feed.close()
            self.transport.close()

    def _step(self, clock: int, plan: RowPlan) -> tuple[float, float, int, tuple]:
        """Forward and backward on the minibatch of ``clock``: (loss, the flat gradient's global
        norm — NaN if any gradient is not finite —, the batch's size, the embedding-row
        gradients). The flat gradient is left in the transport's buffer."""
        x, y, _, ids = self._batch(clock)
        seed = step_seed(self.spec.seed, self.config.index, clock)
        torch.manual_seed(seed)
        if self.spec.data.augment is not None:
            x = augment_batch(x, self.spec.data.augment, seed)
        self._clock = clock
        if self.rows is not None:
            self.rows.start(plan, self.transport.rows)
        self.mirror.load()
        self.flat.zero_grad()
        loss = self.loss(forward(self.net, x, ids), y)
        loss.backward()
        self.flat.gradient()
        norm = float(torch.linalg.vector_norm(self.flat.grads[: self.flat.n_params]))
        rows, finite = self.rows.gradients() if self.rows is not None else ([], True)
        self.mirror.store()
        return float(loss.detach()), norm if finite else float("nan"), len(x), tuple(rows)

    def _run(self, clock: int) -> WorkerTotals:
        self.net.train()
        totals = WorkerTotals(self.config.index, clock, 0, {}, {}, device=str(self.device))
        totals.links = self.transport.kinds
        window = _Window()
        last_report = time.monotonic()
        norm = None
        t0 = start = time.perf_counter()
        pull = self._pull(clock)
        read = self.transport.pull(pull) if pull is not None else None
        self.pull_hist.observe(time.perf_counter() - t0)
        while read is not None:
            t1 = time.perf_counter()
            loss, norm, batch, rows = self._step(clock, pull.plan)
            t2 = time.perf_counter()
            clock += 1
            # The push of this step and the pull of the next travel together.
            pull = self._pull(clock)
            self.transport.send(StepPush(clock, read.version, read.min_clock, norm, rows), pull)
            for ack in self.transport.acks():
                totals.acks[ack.value] = totals.acks.get(ack.value, 0) + 1
            t3 = time.perf_counter()
            read = self.transport.read()
            t4 = time.perf_counter()
            totals.samples += batch
            totals.compute_s += t2 - t1
            totals.push_s += t3 - t2
            totals.pull_s += t4 - t3
            self.push_hist.observe(t3 - t2)
            if clock < self.config.budget:
                self.pull_hist.observe(t4 - t3)
            window.add(loss, batch)
            now = time.monotonic()
            if now - last_report >= REPORT_EVERY_S:
                self._report(clock, window, norm)
                window, last_report = _Window(), now
        if window.steps:
            self._report(clock, window, norm, final=True)
        totals.clock, totals.loop_s = clock, time.perf_counter() - start
        totals.pull_hist, totals.push_hist = self.pull_hist.to_dict(), self.push_hist.to_dict()
        return totals

    def _report(self, clock: int, window: _Window, norm: float | None, final: bool = False) -> None:
        report = WorkerReport(
            worker=self.config.index,
            clock=clock,
            loss=window.loss_sum / window.steps,
            steps=window.steps,
            samples=window.samples,
            grad_norm=norm,
            pull_hist=self.pull_hist.to_dict(),
            push_hist=self.push_hist.to_dict(),
            final=final,
            links=self.transport.kinds,
        )
        if norm is not None and len(self.flat.layers) <= MAX_REPORTED_LAYERS:
            report.layer_grad_norms = self.flat.layer_norms()
        self.supervisor.report.remote(report)  # fire and forget: progress must not slow training


def train_worker(
    config: WorkerConfig, train: list, shards: list, supervisor: Any, start_clock: int = 0
) -> WorkerTotals:
    """A worker's whole life as one Ray task: build it, train from ``start_clock`` to the end.

    A task rather than an actor: Ray keeps task worker processes and hands them to later tasks,
    so a job's workers start in processes that already imported PyTorch (an actor is a new
    process every time). Nothing of the job stays behind: ``run`` closes the transport and
    removes its shared memory, and the worker object goes with the task.
    """
    return Worker(config, train, shards, supervisor).run(start_clock)


@dataclass
class _Window:
    """Training loss and samples since the last progress report."""

    loss_sum: float = 0.0
    steps: int = 0
    samples: int = 0

    def add(self, loss: float, samples: int) -> None:
        self.loss_sum += loss
        self.steps += 1
        self.samples += samples
