"""Server lifecycle: build the gRPC server (ours + health + reflection), bind, stop."""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ps.api.auth import TokenAuthInterceptor
from ps.api.decode import DecodeGuard
from ps.api.observe import MetricsInterceptor
from ps.api.servicer import TrainingServicer
from ps.errors import PSError
from ps.jobs.manager import JobManager
from ps.metrics import ServiceMetrics
from ps.v1 import training_pb2, training_pb2_grpc

SERVICE_NAME = training_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name
HEALTH_CHECK_S = 1.0


class InsecureBind(PSError):
    """Refusing to listen beyond loopback without a token."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_workers: int = 32


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: Path | None, env_value: str | None = None) -> str | None:
    """The API token from a file (first line) or an environment value; None if neither."""
    if path is not None:
        lines = path.read_text().split()
        if not lines:
            raise PSError(f"token file {path} is empty")
        return lines[0]
    return env_value or None


@contextlib.contextmanager
def run_server(
    config: ServerConfig, manager: JobManager, metrics: ServiceMetrics | None = None
) -> Iterator[tuple[grpc.Server, int]]:
    """Start the gRPC server; yields ``(server, bound port)`` and stops it on exit.

    Raises:
        InsecureBind: a non-loopback host without a token.
    """
    if not is_loopback(config.host) and not config.token:
        raise InsecureBind(
            f"refusing to listen on {config.host} without a token: pass --token-file (or PS_TOKEN), "
            "and preferably --tls-cert/--tls-key"
        )
    interceptors: list[grpc.ServerInterceptor] = [MetricsInterceptor(metrics)] if metrics else []
    if config.token:
        interceptors.append(TokenAuthInterceptor(config.token))
    interceptors.append(DecodeGuard())
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers), interceptors=interceptors
    )
    training_pb2_grpc.add_TrainingServiceServicer_to_server(TrainingServicer(manager), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{config.host}:{config.port}"
    if config.tls_cert and config.tls_key:
        creds = grpc.ssl_server_credentials(
            [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())]
        )
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    server.start()
    stopped = threading.Event()
    reporter = threading.Thread(
        target=_report_health,
        args=(health_servicer, manager, stopped),
        name="ps-health",
        daemon=True,
    )
    reporter.start()
    try:
        yield server, port
    finally:
        stopped.set()
        reporter.join(timeout=5)
        health_servicer.enter_graceful_shutdown()
        server.stop(grace=2).wait()


def _report_health(
    servicer: health.HealthServicer, manager: JobManager, stopped: threading.Event
) -> None:
    """SERVING while the job store accepts writes, NOT_SERVING while it refuses them (a full
    disk): checked every :data:`HEALTH_CHECK_S` until ``stopped``."""
    last = None
    while True:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if manager.store.writable
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if status != last:
            for name in ("", SERVICE_NAME):
                servicer.set(name, status)
            last = status
        if stopped.wait(HEALTH_CHECK_S):
            return
