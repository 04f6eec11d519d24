"""The training service assembled: job store, metrics, job manager, gRPC server, /metrics.

``psctl serve`` parses its options into a :class:`ServiceConfig` and calls :func:`run_service`;
the service tests call the same function, so what they test is what runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, disable_created_metrics

from ps.api.metrics_http import serve_metrics
from ps.api.server import ServerConfig, run_server
from ps.jobs.manager import JobManager, ManagerConfig
from ps.jobs.store import JobStore
from ps.metrics import ServiceMetrics


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``psctl serve`` takes (see docs/operations.md for each).

    Attributes:
        storage: run directories go to ``storage/<job_id>/``.
        db: the SQLite job store (default ``storage/jobs.db``).
        data_root: data files and ``init_from`` models must be inside it (default
            ``storage/data``).
        metrics_port: the Prometheus port on ``host`` (0: any free port; -1: no endpoint).
        allow_user_code: accept jobs that run their own code (in their actors, never here).
        hand_back_timeout_s: on stop, how long running jobs get to checkpoint and go back to
            the queue (0: they keep running; the next start re-attaches to them).
    """

    storage: Path
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 9464
    metrics_retention: float = 300.0
    db: Path | None = None
    data_root: Path | None = None
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_queue: int = 100
    allow_user_code: bool = False
    hand_back_timeout_s: float = 60.0


@dataclass
class RunningService:
    """A started service: where it listens and its parts (for tests and embedding)."""

    config: ServiceConfig
    address: str
    metrics_port: int | None
    manager: JobManager
    store: JobStore
    metrics: ServiceMetrics
    data_root: Path


@contextlib.contextmanager
def run_service(config: ServiceConfig) -> Iterator[RunningService]:
    """Start the service on the Ray this process is connected to; stop it on exit.

    Raises:
        InsecureBind: a non-loopback host without a token.
    """
    storage = config.storage.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    data_root = (config.data_root or storage / "data").resolve()
    data_root.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.db or storage / "jobs.db")
    disable_created_metrics()  # *_created series only add noise to every scrape
    metrics = ServiceMetrics(CollectorRegistry(), store.count_by_state, config.metrics_retention)
    manager = JobManager(
        store,
        ManagerConfig(
            storage=storage,
            data_root=data_root,
            max_queue=config.max_queue,
            allow_user_code=config.allow_user_code,
            hand_back_timeout_s=config.hand_back_timeout_s,
        ),
        metrics,
    )
    server = ServerConfig(
        host=config.host,
        port=config.port,
        token=config.token,
        tls_cert=config.tls_cert,
        tls_key=config.tls_key,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(store.close)
        manager.start()
        stack.callback(manager.shutdown)
        _, port = stack.enter_context(run_server(server, manager, metrics))
        metrics_port = None
        if config.metrics_port >= 0:
            metrics_port = stack.enter_context(
                serve_metrics(metrics.registry, config.host, config.metrics_port, config.token)
            )
        yield RunningService(
            config, f"{config.host}:{port}", metrics_port, manager, store, metrics, data_root
        )
