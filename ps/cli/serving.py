"""``psctl serve``: run the training service (gRPC, metrics, job store) until a signal stops
it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ps.cli.common import RayAddressOpt, fail
from ps.errors import PSError

MetricsPortOpt = Annotated[
    int, typer.Option(help="Prometheus /metrics port on the same host (0: any free port, -1: off)")
]
RetentionOpt = Annotated[float, typer.Option(help="seconds a finished job's metric series stay")]
StorageOpt = Annotated[Path, typer.Option(help="run directories go to STORAGE/<job_id>/")]
DbOpt = Annotated[Path | None, typer.Option(help="SQLite job store (default STORAGE/jobs.db)")]
DataRootOpt = Annotated[
    Path | None,
    typer.Option(help="data files and init_from models must be inside it (default STORAGE/data)"),
]
TokenFileOpt = Annotated[
    Path | None, typer.Option(help="file holding the API token (else env PS_TOKEN)")
]
TlsCertOpt = Annotated[Path | None, typer.Option(help="PEM certificate (with --tls-key) for TLS")]
TlsKeyOpt = Annotated[Path | None, typer.Option(help="PEM private key")]
HandBackOpt = Annotated[
    float,
    typer.Option(
        help="on SIGTERM/SIGINT, seconds running jobs get to checkpoint and go back to the "
        "queue (0: they keep running, re-attached on the next start)",
        min=0,
    ),
]


def serve(
    host: Annotated[str, typer.Option(help="bind address (non-loopback needs a token)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="gRPC port (0: any free port)")] = 50051,
    metrics_port: MetricsPortOpt = 9464,
    metrics_retention: RetentionOpt = 300.0,
    ray_address: RayAddressOpt = None,
    storage: StorageOpt = Path("ps-storage"),
    db: DbOpt = None,
    data_root: DataRootOpt = None,
    token_file: TokenFileOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    max_queue: Annotated[int, typer.Option(help="queued jobs beyond this are refused")] = 100,
    allow_user_code: Annotated[
        bool,
        typer.Option(
            "--allow-user-code", help="accept jobs with their own code (it runs in their actors)"
        ),
    ] = False,
    hand_back_timeout: HandBackOpt = 60.0,
) -> None:
    """Run the training service until SIGINT/SIGTERM."""
    import os

    from ps.api.server import read_token
    from ps.service import ServiceConfig

    if bool(tls_cert) != bool(tls_key):
        fail(PSError("--tls-cert and --tls-key go together"))
    try:
        config = ServiceConfig(
            storage=storage,
            host=host,
            port=port,
            metrics_port=metrics_port,
            metrics_retention=metrics_retention,
            db=db,
            data_root=data_root,
            token=read_token(token_file, os.environ.get("PS_TOKEN")),
            tls_cert=tls_cert,
            tls_key=tls_key,
            max_queue=max_queue,
            allow_user_code=allow_user_code,
            hand_back_timeout_s=hand_back_timeout,
        )
        _serve_until_stopped(config, ray_address)
    except PSError as exc:
        fail(exc)


def _serve_until_stopped(config, ray_address: str | None) -> None:
    import logging
    import signal
    import threading

    from ps.jobs.runner import ray_session
    from ps.service import run_service

    # What the service does on its own (recovery, hand-backs, orphans) goes to stderr.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    with ray_session(ray_address, namespace="ps"), run_service(config) as service:
        # After ray.init, which installs handlers of its own: a signal stops us cleanly.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        scheme = "TLS" if config.tls_cert else "plaintext"
        auth = "token auth" if config.token else "no auth (loopback only)"
        code = "user code allowed" if config.allow_user_code else "no user code"
        print(
            f"psctl serve: listening on {service.address} ({scheme}, {auth}, {code}); "
            f"storage {config.storage}",
            flush=True,
        )
        if service.metrics_port is not None:
            print(
                f"psctl serve: metrics on http://{config.host}:{service.metrics_port}/metrics",
                flush=True,
            )
        stop.wait()
        if config.hand_back_timeout_s > 0:
            print(
                "psctl serve: stopping; running jobs checkpoint and go back to the queue "
                f"(up to {config.hand_back_timeout_s:.0f} s)",
                flush=True,
            )
