"""A job's figures from its workers' reports and its shards' stats, aggregated in one place.

Workers report progress (fire and forget) with cumulative pull/push latency histograms; shards
keep cumulative update latency, staleness, rejections and bytes. :class:`JobFigures` turns both
into the events the supervisor emits: :class:`Progress` (a few per second) and
:class:`Telemetry` (cumulative figures for Prometheus).
"""

from __future__ import annotations

import time

import numpy as np

from ps.jobs.events import Figures, Progress
from ps.protocol.buckets import LATENCY_BUCKETS, STALENESS_BUCKETS, Buckets
from ps.server.config import ShardStats
from workers.worker import WorkerReport, WorkerTotals

PROGRESS_EVERY_S = 0.25


def merge_rejected(stats: list[ShardStats]) -> dict[str, int]:
    """Rejected gradients by reason, over every shard."""
    rejected: dict[str, int] = {}
    for s in stats:
        for reason, n in s.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
    return rejected


def staleness_counts(stats: list[ShardStats]) -> dict[int, int]:
    # Every shard sees every push, so one shard's record counts each gradient once.
    return dict(sorted((int(k), n) for k, n in stats[0].staleness.items())) if stats else {}


class JobFigures:
    """Progress and cumulative figures of one job.

    Args:
        sync: whether one step takes one minibatch from every worker (else: one push).
        steps_per_epoch / total_steps: the job's step accounting.
        workers: how many workers the job has.
    """

    def __init__(self, sync: bool, steps_per_epoch: int, total_steps: int, workers: int) -> None:
        self.sync = sync
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps
        self.workers = workers
        self.samples = 0
        self.started = time.monotonic()
        self.worker_restarts = 0
        self.restores = 0
        self.workers_finished = 0
        self._reports: dict[int, WorkerReport] = {}
        self._hists: dict[int, tuple[dict, dict]] = {}  # worker -> (pull, push) histograms
        self._links: dict[int, list[str]] = {}  # worker -> its link kind to each shard
        self._last_progress = 0.0
        self._checkpoint_hist = Buckets(LATENCY_BUCKETS)

    def restart_clock(self) -> None:
        """Training (re)starts now: samples/s are measured from here."""
        self.started = time.monotonic()
        self.workers_finished = 0

    def report(self, report: WorkerReport) -> Progress | None:
        """Fold in a worker's report; a Progress event when one is due."""
        self._reports[report.worker] = report
        self._hists[report.worker] = (report.pull_hist, report.push_hist)
        self._links[report.worker] = report.links or []
        self.samples += report.samples
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S and not report.final:
            return None
        self._last_progress = now
        clocks = [r.clock for r in self._reports.values()]
        step = min(clocks) if self.sync else sum(clocks)
        elapsed = now - self.started
        return Progress(
            step=step,
            epoch=step / self.steps_per_epoch,
            total_steps=self.total_steps,
            train_loss=float(np.mean([r.loss for r in self._reports.values()])),
            samples=self.samples,
            samples_per_s=self.samples / elapsed if elapsed > 0 else 0.0,
            grad_norm=report.grad_norm,
            layer_grad_norms=report.layer_grad_norms,
        )

    def worker_done(self, totals: WorkerTotals) -> None:
        self.workers_finished += 1
        self._hists[totals.worker] = (totals.pull_hist, totals.push_hist)

    def checkpoint_written(self, seconds: float) -> None:
        self._checkpoint_hist.observe(seconds)

    def snapshot(self, stats: list[ShardStats], samples: int | None = None) -> Figures:
        """The job's cumulative figures now."""
        hist = {"pull": Buckets(LATENCY_BUCKETS), "push": Buckets(LATENCY_BUCKETS)}
        for pull, push in self._hists.values():
            hist["pull"].add(pull)
            hist["push"].add(push)
        update, staleness = Buckets(LATENCY_BUCKETS), Buckets(STALENESS_BUCKETS)
        for s in stats:
            update.add(s.update_hist)
        for value, n in staleness_counts(stats).items():
            staleness.observe(value, n)
        return Figures(
            steps=min(s.version for s in stats),
            samples=self.samples if samples is None else samples,
            learning_rate=stats[0].lr,
            workers={
                "running": self.workers - self.workers_finished,
                "finished": self.workers_finished,
            },
            worker_restarts=self.worker_restarts,
            restores=self.restores,
            rejected=merge_rejected(stats),
            bytes_pushed=sum(s.bytes_pushed for s in stats),
            bytes_pulled=sum(s.bytes_pulled for s in stats),
            links=_count(kind for kinds in self._links.values() for kind in kinds),
            table_rows=sum(s.table_rows for s in stats),
            rows_pushed=sum(s.rows_pushed for s in stats),
            sparse_bytes_pushed=sum(s.sparse_bytes_pushed for s in stats),
            sparse_bytes_pulled=sum(s.sparse_bytes_pulled for s in stats),
            rows_admitted=sum(s.rows_admitted for s in stats),
            rows_evicted=sum(s.rows_evicted for s in stats),
            rows_expired=sum(s.rows_expired for s in stats),
            histograms={
                **{k: h.to_dict() for k, h in hist.items()},
                "update": update.to_dict(),
                "staleness": staleness.to_dict(),
                "checkpoint": self._checkpoint_hist.to_dict(),
            },
        )


def _count(kinds) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    return counts
