"""The service client commands: submit, watch, status, list, cancel, resume, delete, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ps.cli.common import EXIT_FAILED, grpc_fail
from ps.cli.output import job_dict, print_job, state_name
from ps.cli.progress import ProgressView

ServerOpt = Annotated[
    str | None, typer.Option("--server", help="HOST:PORT (env PS_SERVER)", envvar="PS_SERVER")
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="API token (env PS_TOKEN)", envvar="PS_TOKEN")
]
CaOpt = Annotated[
    Path | None, typer.Option("--tls-ca", help="CA certificate to trust (enables TLS)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def client(server: str | None, token: str | None, tls_ca: Path | None):
    """A ``ps.client.Client`` for the service at SERVER (imported only when a command needs it)."""
    from ps.client import Client

    return Client(server, token, tls_ca)


def with_client(server: str | None, token: str | None, tls_ca: Path | None, call):
    """Run ``call(client)`` against the service; RPC and domain errors become exit codes."""
    try:
        with client(server, token, tls_ca) as c:
            return call(c)
    except Exception as exc:  # noqa: BLE001
        grpc_fail(exc)


def _follow(c, job_id: str, quiet: bool = False):
    """Stream a job's events into the progress view; returns the finished job."""
    from ps.api.convert import proto_to_event

    final = None
    with ProgressView(quiet) as view:
        for message in c.watch(job_id):
            if message.WhichOneof("event") == "finished":
                final = message.finished
            elif (event := proto_to_event(message)) is not None:
                view(event)
    return final or c.get(job_id)


def submit(
    spec: Annotated[Path, typer.Argument(help="job spec (YAML or JSON)", metavar="SPEC")],
    job_id: Annotated[
        str | None, typer.Option("--job-id", help="your id, for idempotent submission")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="follow the job; exit 0 only if it succeeds")
    ] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    tls_ca: CaOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Submit a job to the service."""
    try:
        with client(server, token, tls_ca) as c:
            job = c.submit(spec, job_id)
            if not wait:
                print(json.dumps(job_dict(job))) if json_out else Console().print(
                    f"submitted {job.job_id} ({state_name(job)})"
                )
                return
            final = _follow(c, job.job_id, quiet=json_out)
    except Exception as exc:  # noqa: BLE001
        grpc_fail(exc)
    if json_out:
        print(json.dumps(job_dict(final)))
    else:
        print_job(final)
    if state_name(final) != "SUCCEEDED":
        raise typer.Exit(EXIT_FAILED)


def watch(
    job_id: str,
    server: ServerOpt = None,
    token: TokenOpt = None,
    tls_ca: CaOpt = None,
) -> None:
    """Follow a job's progress until it ends."""
    try:
        with client(server, token, tls_ca) as c:
            final = _follow(c, job_id)
    except Exception as exc:  # noqa: BLE001
        grpc_fail(exc)
    print_job(final)


def status(
    job_id: str,
    server: ServerOpt = None,
    token: TokenOpt = None,
    tls_ca: CaOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one job."""
    job = with_client(server, token, tls_ca, lambda c: c.get(job_id))
    print(json.dumps(job_dict(job))) if json_out else print_job(job)


def list_jobs(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="only jobs in this state (repeatable)")
    ] = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    tls_ca: CaOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    try:
        with client(server, token, tls_ca) as c:
            jobs = list(c.list([s.upper() for s in state or []]))
    except Exception as exc:  # noqa: BLE001
        grpc_fail(exc)
    if json_out:
        print(json.dumps([job_dict(j) for j in jobs]))
        return
    _print_jobs(jobs)


def _print_jobs(jobs) -> None:
    """A table whose job ids are never cut (they are what `status` and `export` take), then
    each job's error on a line of its own."""
    out = Console()
    table = Table()
    widest = max((len(j.job_id) for j in jobs), default=3)
    table.add_column("job", no_wrap=True, min_width=widest)
    for col in ("name", "state", "step", "test acc"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        acc = f"{j.result.test_accuracy:.4f}" if j.result.HasField("test_accuracy") else ""
        step = f"{j.progress.step}/{j.progress.total_steps}" if j.HasField("progress") else ""
        table.add_row(j.job_id, j.name, state_name(j), step, acc)
    out.print(table)
    for j in jobs:
        if j.error:
            out.print(f"{j.job_id}: {j.error}", soft_wrap=True, highlight=False, markup=False)


def cancel(
    job_id: str, server: ServerOpt = None, token: TokenOpt = None, tls_ca: CaOpt = None
) -> None:
    """Cancel a queued or running job (waits until its actors are gone); a job that has
    already finished is left as it is (exit 0)."""

    from ps.client import Client

    def call(c):
        before = c.get(job_id)
        finished = Client.state(before).is_terminal()
        return finished, (before if finished else c.cancel(job_id))

    finished, job = with_client(server, token, tls_ca, call)
    if finished:
        Console().print(f"{job.job_id} had already finished ({state_name(job)}): nothing to cancel")
    else:
        Console().print(f"{job.job_id}: {state_name(job)}")


def resume(
    job_id: str, server: ServerOpt = None, token: TokenOpt = None, tls_ca: CaOpt = None
) -> None:
    """Continue a FAILED or CANCELLED job from its last checkpoint (fresh failure budget)."""
    job = with_client(server, token, tls_ca, lambda c: c.resume(job_id))
    Console().print(f"{job.job_id}: {state_name(job)} (resuming from its last checkpoint)")


def delete(
    job_id: str, server: ServerOpt = None, token: TokenOpt = None, tls_ca: CaOpt = None
) -> None:
    """Delete a finished job's record and run directory."""
    with_client(server, token, tls_ca, lambda c: c.delete(job_id))
    Console().print(f"deleted {job_id}")


def export(
    job_id: str,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write")] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="pt (for load_model) or pt2 (a torch.export program, torch only)"
        ),
    ] = "pt",
    server: ServerOpt = None,
    token: TokenOpt = None,
    tls_ca: CaOpt = None,
) -> None:
    """Download a succeeded job's model: model.pt (workers.models.load_model) or model.pt2
    (torch.export.load(path).module(), no code of ours needed)."""
    target = output or Path(f"model.{fmt}")
    path = with_client(server, token, tls_ca, lambda c: c.export(job_id, target, fmt))
    Console().print(f"wrote {path} ({path.stat().st_size:,} bytes)")
