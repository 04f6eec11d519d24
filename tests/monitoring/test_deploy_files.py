"""The monitoring deploy files stay in step with the code: port, metric names, valid config."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from ps import cli
from ps.jobs.events import Progress
from ps.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"


def _exported_names() -> set[str]:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, job_counts=lambda: {})
    progress = Progress(step=1, total_steps=2, epoch=0.5, grad_norm=1.0, train_loss=1.0)
    metrics.telemetry.update("j", progress)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names |= {s.name for s in family.samples}
        if family.type == "histogram":
            names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum")}
    return names | {f"{n}_total" for n in names}


def test_prometheus_config_targets_the_default_metrics_port():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    default_port = inspect.signature(cli.serve).parameters["metrics_port"].default
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{default_port}"]


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)"
)
def test_prometheus_config_is_valid():
    check = subprocess.run(
        ["promtool", "check", "config", str(MONITORING / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_dashboard_queries_only_metrics_we_export():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bps_[a-z_]+", e)}
    assert used, "the dashboard queries no ps_ metric"
    assert used <= _exported_names(), used - _exported_names()
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "loss",
        "accuracy",
        "generalization gap",
        "throughput",
        "staleness",
        "latency",
        "jobs by state",
    ):
        assert topic in titles
