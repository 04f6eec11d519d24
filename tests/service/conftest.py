"""A real training service (gRPC on a loopback port, SQLite, the shared Ray) for service tests."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ps.api.server import ServerConfig, run_server
from ps.client import Client
from ps.jobs.manager import JobManager, ManagerConfig
from ps.jobs.store import JobStore
from ps.metrics import ServiceMetrics

TOKEN = "test-token-0123456789"


@dataclass
class Service:
    address: str
    manager: JobManager
    storage: Path
    data_root: Path
    metrics: ServiceMetrics | None = None

    def client(self, token: str | None = TOKEN) -> Client:
        return Client(self.address, token=token)


@contextlib.contextmanager
def start_service(
    root: Path, max_queue: int = 100, token: str | None = TOKEN, metrics: bool = False
):
    store = JobStore(root / "jobs.db")
    data_root = root / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    service_metrics = (
        ServiceMetrics(CollectorRegistry(), store.count_by_state, 300) if metrics else None
    )
    manager = JobManager(
        store,
        ManagerConfig(storage=root / "runs", data_root=data_root, max_queue=max_queue),
        service_metrics,
    )
    manager.start()
    try:
        config = ServerConfig(host="127.0.0.1", port=0, token=token)
        with run_server(config, manager, service_metrics) as (_, port):
            yield Service(f"127.0.0.1:{port}", manager, root / "runs", data_root, service_metrics)
    finally:
        manager.shutdown()
        store.close()


@pytest.fixture(scope="module")
def service(ray_runtime, tmp_path_factory):
    with start_service(tmp_path_factory.mktemp("service")) as svc:
        yield svc
