"""A real training service (gRPC on a loopback port, SQLite, the shared Ray) for service tests,
started by the same ``run_service`` that ``psctl serve`` calls."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from ps.client import Client
from ps.jobs.manager import JobManager
from ps.metrics import ServiceMetrics
from ps.service import ServiceConfig, run_service

TOKEN = "test-token-0123456789"


@dataclass
class Service:
    address: str
    manager: JobManager
    storage: Path
    data_root: Path
    metrics: ServiceMetrics
    metrics_url: str | None = None

    def client(self, token: str | None = TOKEN) -> Client:
        return Client(self.address, token=token)


@contextlib.contextmanager
def start_service(
    root: Path,
    max_queue: int = 100,
    token: str | None = TOKEN,
    metrics: bool = False,
    allow_user_code: bool = False,
):
    """A service in ``root`` (store ``jobs.db``, data ``data/``, runs ``runs/``); with
    ``metrics`` its /metrics endpoint on a free port."""
    config = ServiceConfig(
        storage=root / "runs",
        host="127.0.0.1",
        port=0,
        metrics_port=0 if metrics else -1,
        db=root / "jobs.db",
        data_root=root / "data",
        token=token,
        max_queue=max_queue,
        allow_user_code=allow_user_code,
    )
    with run_service(config) as running:
        url = f"http://127.0.0.1:{running.metrics_port}/metrics" if metrics else None
        yield Service(
            running.address,
            running.manager,
            config.storage,
            running.data_root,
            running.metrics,
            url,
        )


@pytest.fixture(scope="module")
def service(ray_runtime, tmp_path_factory):
    with start_service(tmp_path_factory.mktemp("service")) as svc:
        yield svc
