"""Every Prometheus metric of the project, defined once, against a passed-in registry.

Service metrics are ordinary prometheus_client objects. Per-job training metrics come from the
job's actors through the supervisor (workers report to it, it polls the shards) as *cumulative*
snapshots, kept here in :class:`JobTelemetry` and rendered at scrape time by a collector — so a
lost event never skews a counter, and a job's series disappear ``retention_s`` after it ends.

Histograms cross process boundaries as :class:`ps.protocol.buckets.Buckets` (counts per bucket
bound + sum); the bounds are defined there once, beside the shards and workers that fill them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ps.jobs.events import Evaluation, Event, Progress, Telemetry
from ps.jobs.state import JobState
from ps.protocol.buckets import LATENCY_BUCKETS, STALENESS_BUCKETS, Buckets

__all__ = ["LATENCY_BUCKETS", "STALENESS_BUCKETS", "Buckets", "JobTelemetry", "ServiceMetrics"]

JOB_STATES = tuple(s.value for s in JobState)
SUBMISSION_OUTCOMES = (
    "accepted",
    "invalid",
    "duplicate",
    "too_large",
    "queue_full",
    "unavailable",
    "forbidden",
    "error",
)
REJECT_REASONS = ("non_finite", "duplicate")
LINK_KINDS = ("shm", "unix", "tcp", "ray", "ray-shm")
WORKER_STATES = ("running", "finished")


def _hist_family(
    name: str, doc: str, label_names: list[str], series: Iterable[tuple[list[str], dict]], bounds
) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=label_names)
    for labels, data in series:
        cumulative, running = [], 0
        for bound, count in zip((*bounds, float("inf")), data["counts"], strict=True):
            running += count
            cumulative.append((_le(bound), running))
        fam.add_metric(labels, cumulative, data["sum"])
    return fam


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


@dataclass
class JobSeries:
    """The latest cumulative figures of one job."""

    job_id: str
    steps: int = 0
    samples: int = 0
    epoch: float = 0.0
    train_loss: float | None = None
    validation_loss: float | None = None
    validation_accuracy: float | None = None
    generalization_gap: float | None = None
    learning_rate: float | None = None
    gradient_norm: dict[str, float] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    worker_restarts: int = 0
    restores: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    bytes_pushed: int = 0
    bytes_pulled: int = 0
    histograms: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, int] = field(default_factory=dict)
    validation_auc: float | None = None
    table_rows: int | None = None
    rows_pushed: int = 0
    rows_per_step: float | None = None
    sparse_bytes_pushed: int = 0
    sparse_bytes_pulled: int = 0
    rows_admitted: int = 0
    rows_evicted: int = 0
    rows_expired: int = 0
    ended_at: float | None = None


HISTOGRAMS = {
    "push": (
        "ps_push_duration_seconds",
        "Time for a worker to push a gradient to every shard.",
        LATENCY_BUCKETS,
    ),
    "pull": (
        "ps_pull_duration_seconds",
        "Time for a worker to pull the parameters from every shard (incl. gate waits).",
        LATENCY_BUCKETS,
    ),
    "update": (
        "ps_update_duration_seconds",
        "Time a shard spends applying one optimizer update.",
        LATENCY_BUCKETS,
    ),
    "staleness": (
        "ps_gradient_staleness_steps",
        "Staleness of applied gradients in steps (clock minus slowest clock at read).",
        STALENESS_BUCKETS,
    ),
    "checkpoint": (
        "ps_checkpoint_duration_seconds",
        "Time to write one checkpoint.",
        LATENCY_BUCKETS,
    ),
}


class JobTelemetry(Collector):
    """Per-job training metrics: updated from job events, rendered at scrape time.

    Args:
        retention_s: how long a finished job's series stay visible.
        clock: time source (tests pass their own).
    """

    def __init__(self, retention_s: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self.retention_s = retention_s
        self.clock = clock
        self._jobs: dict[str, JobSeries] = {}
        self._lock = threading.Lock()

    def update(self, job_id: str, event: Event) -> None:
        """Fold a supervisor event (progress, evaluation, telemetry) into the job's series (an
        ensemble member's into the series of ``<job_id>.m<member>``)."""
        if event.member is not None:
            job_id = f"{job_id}.m{event.member}"
        with self._lock:
            s = self._jobs.setdefault(job_id, JobSeries(job_id))
            if isinstance(event, Evaluation):
                s.validation_loss = event.val_loss
                s.validation_accuracy = event.val_accuracy
                s.validation_auc = event.val_auc
                s.generalization_gap = event.generalization_gap
                s.learning_rate = event.learning_rate
                s.epoch = max(s.epoch, event.epoch)
            elif isinstance(event, Progress):
                s.train_loss = event.train_loss
                s.epoch = max(s.epoch, event.epoch)
                norms = dict(event.layer_grad_norms or {})
                if event.grad_norm is not None:
                    norms["global"] = event.grad_norm
                if norms:
                    s.gradient_norm = norms
            elif isinstance(event, Telemetry):
                f = event.figures
                s.steps, s.samples = f.steps, f.samples
                s.workers = dict(f.workers)
                s.worker_restarts, s.restores = f.worker_restarts, f.restores
                s.rejected = dict(f.rejected)
                s.bytes_pushed, s.bytes_pulled = f.bytes_pushed, f.bytes_pulled
                s.histograms = dict(f.histograms)
                s.links = dict(f.links)
                if f.table_rows or f.rows_pushed:  # a job with embedding tables
                    s.table_rows, s.rows_pushed = f.table_rows, f.rows_pushed
                    s.rows_per_step = f.rows_pushed / f.steps if f.steps else None
                    s.sparse_bytes_pushed = f.sparse_bytes_pushed
                    s.sparse_bytes_pulled = f.sparse_bytes_pulled
                    s.rows_admitted, s.rows_evicted = f.rows_admitted, f.rows_evicted
                    s.rows_expired = f.rows_expired
                if f.learning_rate is not None:
                    s.learning_rate = f.learning_rate

    def end(self, job_id: str) -> None:
        """The job ended: its series go away ``retention_s`` from now."""
        with self._lock:
            for key, series in self._jobs.items():
                if key == job_id or key.startswith(f"{job_id}.m"):  # and its members'
                    series.ended_at = self.clock()

    def jobs(self) -> list[str]:
        self._expire()
        with self._lock:
            return sorted(self._jobs)

    def _expire(self) -> None:
        now = self.clock()
        with self._lock:
            for job_id in [
                j
                for j, s in self._jobs.items()
                if s.ended_at is not None and now - s.ended_at >= self.retention_s
            ]:
                del self._jobs[job_id]

    def collect(self) -> Iterator:
        self._expire()
        with self._lock:
            jobs = [JobSeries(**vars(s)) for s in self._jobs.values()]
        for name, doc, attribute in JOB_COUNTERS:
            fam = CounterMetricFamily(name, doc, labels=["job_id"])
            for s in jobs:
                fam.add_metric([s.job_id], getattr(s, attribute))
            yield fam
        for name, doc, attribute in JOB_GAUGES:
            fam = GaugeMetricFamily(name, doc, labels=["job_id"])
            for s in jobs:
                if getattr(s, attribute) is not None:
                    fam.add_metric([s.job_id], getattr(s, attribute))
            yield fam
        yield from _labelled(jobs)
        for key, (name, doc, bounds) in HISTOGRAMS.items():
            series = [([s.job_id], s.histograms[key]) for s in jobs if key in s.histograms]
            yield _hist_family(name, doc, ["job_id"], series, bounds)


JOB_COUNTERS = (
    ("ps_job_steps", "Parameter-server updates applied (versions).", "steps"),
    ("ps_job_samples", "Training samples consumed by the workers.", "samples"),
    (
        "ps_job_restores",
        "Times the job's parameter servers were restored from a checkpoint.",
        "restores",
    ),
    ("ps_job_worker_restarts", "Worker actors replaced after a failure.", "worker_restarts"),
    ("ps_bytes_pushed", "Gradient bytes received by the shards.", "bytes_pushed"),
    ("ps_bytes_pulled", "Parameter bytes sent by the shards.", "bytes_pulled"),
    ("ps_rows_pushed", "Embedding-row gradients received by the shards.", "rows_pushed"),
    (
        "ps_sparse_bytes_pushed",
        "Embedding-row bytes (keys and gradients) received by the shards.",
        "sparse_bytes_pushed",
    ),
    (
        "ps_sparse_bytes_pulled",
        "Embedding-row bytes (keys and rows) sent by the shards.",
        "sparse_bytes_pulled",
    ),
    (
        "ps_table_rows_admitted",
        "Embedding rows created (ids past model.embedding.admit_after).",
        "rows_admitted",
    ),
    (
        "ps_table_rows_evicted",
        "Embedding rows dropped to keep model.embedding.max_rows.",
        "rows_evicted",
    ),
    (
        "ps_table_rows_expired",
        "Embedding rows dropped after model.embedding.expire_after_steps without an update.",
        "rows_expired",
    ),
)
JOB_GAUGES = (
    ("ps_job_epoch", "Epochs completed (fractional).", "epoch"),
    ("ps_job_train_loss", "Recent minibatch training loss.", "train_loss"),
    ("ps_job_validation_loss", "Validation loss at the latest evaluation.", "validation_loss"),
    (
        "ps_job_validation_accuracy",
        "Validation accuracy at the latest evaluation.",
        "validation_accuracy",
    ),
    (
        "ps_job_generalization_gap",
        "Validation loss minus training loss at the latest evaluation.",
        "generalization_gap",
    ),
    ("ps_job_learning_rate", "Learning rate of the latest update.", "learning_rate"),
    (
        "ps_job_validation_auc",
        "Validation ROC AUC at the latest evaluation (bce).",
        "validation_auc",
    ),
    (
        "ps_table_rows",
        "Embedding rows the job's shards hold (created on first touch).",
        "table_rows",
    ),
    (
        "ps_rows_touched_per_step",
        "Embedding rows pushed per update, on average (a batch's distinct ids, all workers).",
        "rows_per_step",
    ),
)


def _labelled(jobs: list[JobSeries]) -> Iterator:
    """The per-job families with a second label: layer, worker state, rejection reason."""
    norm = GaugeMetricFamily(
        "ps_job_gradient_norm",
        "Gradient L2 norm: layer=global, or per parameter tensor.",
        labels=["job_id", "layer"],
    )
    workers = GaugeMetricFamily(
        "ps_job_workers", "Worker actors of the job by state.", labels=["job_id", "state"]
    )
    links = GaugeMetricFamily(
        "ps_job_links",
        "Worker-shard links by kind: shm, unix, tcp (data-plane channels), ray, ray-shm "
        "(Ray calls: the object_store setting, or a fallback where a channel could not be built).",
        labels=["job_id", "kind"],
    )
    rejected = CounterMetricFamily(
        "ps_gradients_rejected",
        "Gradients the shards refused, by reason.",
        labels=["job_id", "reason"],
    )
    for s in jobs:
        for layer, value in s.gradient_norm.items():
            norm.add_metric([s.job_id, layer], value)
        for state in WORKER_STATES:
            workers.add_metric([s.job_id, state], s.workers.get(state, 0))
        for reason in REJECT_REASONS:
            rejected.add_metric([s.job_id, reason], s.rejected.get(reason, 0))
        for kind in LINK_KINDS:
            links.add_metric([s.job_id, kind], s.links.get(kind, 0))
    yield from (norm, workers, rejected, links)


class ServiceMetrics:
    """Everything the service exports, registered on ``registry``.

    Args:
        registry: where to register (tests pass a fresh ``CollectorRegistry()``).
        job_counts: returns the number of jobs per state (read from the store at scrape time).
        retention_s: how long a finished job's series stay.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        job_counts: Callable[[], dict[str, int]] | None = None,
        retention_s: float = 300.0,
    ) -> None:
        self.registry = registry
        self.submissions = Counter(
            "ps_job_submissions", "SubmitJob calls by outcome.", ["outcome"], registry=registry
        )
        for outcome in SUBMISSION_OUTCOMES:
            self.submissions.labels(outcome)
        self.grpc_requests = Counter(
            "ps_grpc_requests",
            "gRPC requests by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.grpc_duration = Histogram(
            "ps_grpc_request_duration_seconds",
            "gRPC request handling time (streams: until they end).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.telemetry = JobTelemetry(retention_s)
        registry.register(self.telemetry)
        if job_counts is not None:
            registry.register(_JobStateCollector(job_counts))


class _JobStateCollector(Collector):
    def __init__(self, job_counts: Callable[[], dict[str, int]]) -> None:
        self.job_counts = job_counts

    def collect(self) -> Iterator:
        counts = self.job_counts()
        jobs = GaugeMetricFamily("ps_jobs", "Jobs in the store by state.", labels=["state"])
        for state in JOB_STATES:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        yield GaugeMetricFamily(
            "ps_queue_length", "Jobs waiting for resources.", value=counts.get("QUEUED", 0)
        )
