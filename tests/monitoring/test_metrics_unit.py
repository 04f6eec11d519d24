"""ps.metrics against a fresh registry: families, values, histograms, label removal."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from ps.jobs.events import Evaluation, Figures, Progress, Telemetry
from ps.metrics import LATENCY_BUCKETS, STALENESS_BUCKETS, Buckets, ServiceMetrics


def _telemetry(steps: int) -> Telemetry:
    latency = Buckets(LATENCY_BUCKETS)
    for v in (0.0004, 0.003, 0.003, 20.0):
        latency.observe(v)
    stale = Buckets(STALENESS_BUCKETS)
    stale.observe(0, 5)
    stale.observe(2, 1)
    return Telemetry(
        figures=Figures(
            steps=steps,
            samples=640,
            learning_rate=0.01,
            workers={"running": 2, "finished": 0},
            worker_restarts=0,
            restores=0,
            rejected={"non_finite": 3},
            bytes_pushed=4000,
            bytes_pulled=8000,
            histograms={k: latency.to_dict() for k in ("pull", "push", "update", "checkpoint")}
            | {"staleness": stale.to_dict()},
        )
    )


def test_buckets_are_cumulative_in_the_exposition():
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    metrics.telemetry.update("j", _telemetry(10))
    get = registry.get_sample_value
    assert get("ps_push_duration_seconds_bucket", {"job_id": "j", "le": "0.0005"}) == 1
    assert get("ps_push_duration_seconds_bucket", {"job_id": "j", "le": "0.005"}) == 3
    assert get("ps_push_duration_seconds_bucket", {"job_id": "j", "le": "+Inf"}) == 4
    assert get("ps_push_duration_seconds_count", {"job_id": "j"}) == 4
    assert abs(get("ps_push_duration_seconds_sum", {"job_id": "j"}) - 20.0064) < 1e-9
    assert get("ps_gradient_staleness_steps_bucket", {"job_id": "j", "le": "0.0"}) == 5
    assert get("ps_gradient_staleness_steps_bucket", {"job_id": "j", "le": "2.0"}) == 6


def test_job_series_from_events():
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, job_counts=lambda: {"RUNNING": 1, "QUEUED": 2})
    t = metrics.telemetry
    t.update(
        "j",
        Progress(
            step=1,
            total_steps=10,
            train_loss=0.5,
            epoch=1.5,
            grad_norm=2.0,
            layer_grad_norms={"0.weight": 1.5, "0.bias": 0.1},
        ),
    )
    t.update(
        "j",
        Evaluation(
            step=2,
            val_loss=0.7,
            val_accuracy=0.8,
            generalization_gap=0.2,
            learning_rate=0.05,
            epoch=2.0,
        ),
    )
    t.update("j", _telemetry(42))
    get = registry.get_sample_value
    j = {"job_id": "j"}
    assert get("ps_job_steps_total", j) == 42
    assert get("ps_job_samples_total", j) == 640
    assert get("ps_job_epoch", j) == 2.0
    assert get("ps_job_train_loss", j) == 0.5
    assert get("ps_job_validation_loss", j) == 0.7
    assert get("ps_job_validation_accuracy", j) == 0.8
    assert get("ps_job_generalization_gap", j) == 0.2
    assert get("ps_job_learning_rate", j) == 0.01  # the telemetry's latest update wins
    assert get("ps_job_gradient_norm", {"job_id": "j", "layer": "global"}) == 2.0
    assert get("ps_job_gradient_norm", {"job_id": "j", "layer": "0.weight"}) == 1.5
    assert get("ps_job_workers", {"job_id": "j", "state": "running"}) == 2
    assert get("ps_gradients_rejected_total", {"job_id": "j", "reason": "non_finite"}) == 3
    assert get("ps_gradients_rejected_total", {"job_id": "j", "reason": "duplicate"}) == 0
    assert get("ps_bytes_pushed_total", j) == 4000 and get("ps_bytes_pulled_total", j) == 8000
    assert get("ps_jobs", {"state": "RUNNING"}) == 1 and get("ps_jobs", {"state": "FAILED"}) == 0
    assert get("ps_queue_length") == 2
    assert get("ps_job_submissions_total", {"outcome": "accepted"}) == 0  # pre-initialized


def test_a_finished_jobs_series_are_removed_after_the_retention():
    now = [1000.0]
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, retention_s=60)
    metrics.telemetry.clock = lambda: now[0]
    metrics.telemetry.update("old", _telemetry(5))
    metrics.telemetry.update("new", _telemetry(6))
    metrics.telemetry.end("old")
    now[0] += 59
    assert registry.get_sample_value("ps_job_steps_total", {"job_id": "old"}) == 5
    now[0] += 2
    assert registry.get_sample_value("ps_job_steps_total", {"job_id": "old"}) is None
    assert registry.get_sample_value("ps_job_steps_total", {"job_id": "new"}) == 6
    assert b'job_id="old"' not in generate_latest(registry)
