"""psctl: the one command-line tool. Domain errors become messages and exit codes here only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import progress as bar
from rich.console import Console
from rich.table import Table

from ps.errors import PSError, SpecError
from ps.jobs.events import Evaluation, Event, Finished, JobResult, Progress, StateChanged
from ps.jobs.state import JobState

app = typer.Typer(
    help="Parameter-server training on Ray.", no_args_is_help=True, add_completion=False
)
console = Console(stderr=True)

EXIT_SPEC, EXIT_FAILED, EXIT_RESOURCES = 2, 1, 3


@app.callback()
def _root() -> None:
    """Parameter-server training on Ray: run jobs locally or against a training service."""


def _fail(exc: Exception) -> None:
    from ps.jobs.runner import ResourceError

    if isinstance(exc, SpecError):
        console.print(f"[red]invalid spec[/red] {exc}")
        for other in getattr(exc, "others", []):
            console.print(f"  also: {other}")
        raise typer.Exit(EXIT_SPEC)
    if isinstance(exc, ResourceError):
        console.print(f"[red]not enough resources:[/red] {exc}")
        raise typer.Exit(EXIT_RESOURCES)
    console.print(f"[red]failed:[/red] {exc}")
    raise typer.Exit(EXIT_FAILED)


class ProgressView:
    """A live progress bar fed by job events: step, epoch, loss, validation accuracy, samples/s."""

    def __init__(self, quiet: bool = False) -> None:
        self.progress = bar.Progress(
            bar.TextColumn("[bold]{task.description}"),
            bar.BarColumn(),
            bar.TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
            bar.TextColumn("{task.fields[info]}"),
            bar.TimeElapsedColumn(),
            bar.TextColumn("ETA"),
            bar.TimeRemainingColumn(),
            console=console,
            disable=quiet,
        )
        self.task = None
        self.total = 0
        self.fields = {
            "epoch": 0.0,
            "loss": None,
            "val_acc": None,
            "gap": None,
            "lr": None,
            "sps": None,
        }

    def __enter__(self) -> ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def _info(self) -> str:
        f = self.fields
        parts = [f"epoch {f['epoch']:.1f}"]
        if f["loss"] is not None:
            parts.append(f"loss {f['loss']:.4f}")
        if f["val_acc"] is not None:
            parts.append(f"val_acc {f['val_acc']:.3f}")
        if f["gap"] is not None:
            parts.append(f"gap {f['gap']:+.4f}")
        if f["lr"] is not None:
            parts.append(f"lr {f['lr']:.2e}")
        if f["sps"] is not None:
            parts.append(f"{f['sps']:,.0f} samples/s")
        return "  ".join(parts)

    def __call__(self, event: Event) -> None:
        """Show one job event."""
        if isinstance(event, StateChanged) and event.state == JobState.RUNNING:
            if self.task is None:
                self.total = event.total_steps
                self.task = self.progress.add_task("training", total=self.total, info="")
            return
        if self.task is None:
            return
        if isinstance(event, Progress):
            self.fields.update(epoch=event.epoch, loss=event.train_loss, sps=event.samples_per_s)
        elif isinstance(event, Evaluation):
            self.fields.update(
                epoch=event.epoch,
                val_acc=event.val_accuracy,
                gap=event.generalization_gap,
                lr=event.learning_rate,
            )
            if event.val_loss is None:
                self.fields["loss"] = event.train_loss
        elif isinstance(event, Finished):
            self.progress.update(self.task, completed=event.result.steps)
            return
        else:
            return
        step = min(event.step, self.total) if self.total else event.step
        self.progress.update(self.task, completed=step, info=self._info())


def print_result(result: JobResult) -> None:
    title = f"job {result.job_id} — {result.state} ({result.stop_reason})"
    table = Table(title=title)
    table.add_column("")
    table.add_column("loss", justify="right")
    table.add_column("accuracy", justify="right")
    auc = result.test_auc is not None or result.val_auc is not None  # bce
    if auc:
        table.add_column("AUC", justify="right")
    fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    for split in ("train", "val", "test"):
        cells = [fmt(getattr(result, f"{split}_{k}")) for k in ("loss", "accuracy")]
        if auc:
            cells.append(fmt(getattr(result, f"{split}_auc")))
        table.add_row(split, *cells)
    Console().print(table)
    if result.members:
        mean = [m["test_accuracy"] for m in result.members if m.get("test_accuracy") is not None]
        if mean:
            Console().print(
                f"ensemble of {len(result.members)}: mean member test accuracy "
                f"{sum(mean) / len(mean):.4f}"
            )
    Console().print(
        f"steps {result.steps}/{result.total_steps}  epochs {result.epochs:.2f}  "
        f"wall {result.wall_time_s:.1f}s  {result.samples_per_s:,.0f} samples/s  "
        f"rejected gradients {sum(result.rejected_gradients.values())}"
    )


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="job spec (YAML or JSON)")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="run directory")] = None,
    ray_address: RayAddressOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Train SPEC to completion on Ray and write the run directory."""
    from ps.jobs.runner import ray_session, run_job
    from ps.spec import load_spec

    try:
        job = load_spec(spec)
        out = output or Path("runs") / (job.name or spec.stem)
        with ray_session(ray_address), ProgressView(quiet or json_out) as view:
            result = run_job(job, out, on_event=view)
    except PSError as exc:
        _fail(exc)
    if json_out:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_result(result)
        Console().print(f"run directory: {out}  (model: {out / 'model.pt'})")


# -- the service ---------------------------------------------------------------------------------


RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", help="existing Ray cluster (else RAY_ADDRESS, else embedded)"),
]
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


@app.command()
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
        bool, typer.Option(help="accept jobs with their own code (it runs in their actors)")
    ] = False,
) -> None:
    """Run the training service until SIGINT/SIGTERM."""
    import os

    from ps.api.server import read_token
    from ps.service import ServiceConfig

    if bool(tls_cert) != bool(tls_key):
        _fail(PSError("--tls-cert and --tls-key go together"))
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
        )
        _serve_until_stopped(config, ray_address)
    except PSError as exc:
        _fail(exc)


def _serve_until_stopped(config, ray_address: str | None) -> None:
    import signal
    import threading

    from ps.jobs.runner import ray_session
    from ps.service import run_service

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


def _client(server: str | None, token: str | None, tls_ca: Path | None):
    from ps.client import Client

    return Client(server, token, tls_ca)


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


def _grpc_fail(exc: Exception) -> None:
    import grpc

    if isinstance(exc, grpc.RpcError):
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        refused = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
        raise typer.Exit(EXIT_SPEC if exc.code() in refused else EXIT_FAILED)
    if isinstance(exc, PSError):
        _fail(exc)
    raise exc


def _with_client(server: str | None, token: str | None, tls_ca: Path | None, call):
    """Run ``call(client)`` against the service; RPC and domain errors become exit codes."""
    try:
        with _client(server, token, tls_ca) as client:
            return call(client)
    except Exception as exc:  # noqa: BLE001
        _grpc_fail(exc)


def _job_dict(job) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(job, preserving_proto_field_name=True)


def _state(job) -> str:
    from ps.api.convert import state_from_proto

    return state_from_proto(job.state).value


def _print_job(job) -> None:
    out = Console()
    out.print(f"[bold]{job.job_id}[/bold]  {job.name or ''}  [cyan]{_state(job)}[/cyan]")
    if job.HasField("progress"):
        p = job.progress
        loss = f"  loss {p.train_loss:.4f}" if p.HasField("train_loss") else ""
        out.print(f"  step {p.step}/{p.total_steps}  epoch {p.epoch:.2f}{loss}")
    if job.HasField("result"):
        print_result(JobResult.from_dict(json.loads(job.result.result_json)))
    if job.error:
        out.print(f"  [red]error:[/red] {job.error}")
    out.print(f"  run directory: {job.run_dir}")


@app.command()
def submit(
    spec: Annotated[Path, typer.Argument(help="job spec (YAML or JSON)")],
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
        with _client(server, token, tls_ca) as client:
            job = client.submit(spec, job_id)
            if not wait:
                print(json.dumps(_job_dict(job))) if json_out else Console().print(
                    f"submitted {job.job_id} ({_state(job)})"
                )
                return
            final = _follow(client, job.job_id, quiet=json_out)
    except Exception as exc:  # noqa: BLE001
        _grpc_fail(exc)
    if json_out:
        print(json.dumps(_job_dict(final)))
    else:
        _print_job(final)
    if _state(final) != "SUCCEEDED":
        raise typer.Exit(EXIT_FAILED)


def _follow(client, job_id: str, quiet: bool = False):
    """Stream a job's events into the progress view; returns the finished job."""
    from ps.api.convert import proto_to_event

    final = None
    with ProgressView(quiet) as view:
        for message in client.watch(job_id):
            if message.WhichOneof("event") == "finished":
                final = message.finished
            elif (event := proto_to_event(message)) is not None:
                view(event)
    return final or client.get(job_id)


@app.command()
def watch(
    job_id: str,
    server: ServerOpt = None,
    token: TokenOpt = None,
    tls_ca: CaOpt = None,
) -> None:
    """Follow a job's progress until it ends."""
    try:
        with _client(server, token, tls_ca) as client:
            final = _follow(client, job_id)
    except Exception as exc:  # noqa: BLE001
        _grpc_fail(exc)
    _print_job(final)


@app.command()
def status(
    job_id: str,
    server: ServerOpt = None,
    token: TokenOpt = None,
    tls_ca: CaOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one job."""
    job = _with_client(server, token, tls_ca, lambda client: client.get(job_id))
    print(json.dumps(_job_dict(job))) if json_out else _print_job(job)


@app.command("list")
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
        with _client(server, token, tls_ca) as client:
            jobs = list(client.list([s.upper() for s in state or []]))
    except Exception as exc:  # noqa: BLE001
        _grpc_fail(exc)
    if json_out:
        print(json.dumps([_job_dict(j) for j in jobs]))
        return
    table = Table()
    for col in ("job", "name", "state", "step", "test acc", "error"):
        table.add_column(col)
    for j in jobs:
        acc = f"{j.result.test_accuracy:.4f}" if j.result.HasField("test_accuracy") else ""
        step = f"{j.progress.step}/{j.progress.total_steps}" if j.HasField("progress") else ""
        table.add_row(j.job_id, j.name, _state(j), step, acc, j.error[:60])
    Console().print(table)


@app.command()
def cancel(
    job_id: str, server: ServerOpt = None, token: TokenOpt = None, tls_ca: CaOpt = None
) -> None:
    """Cancel a queued or running job (waits until its actors are gone)."""
    job = _with_client(server, token, tls_ca, lambda client: client.cancel(job_id))
    Console().print(f"{job.job_id}: {_state(job)}")


@app.command()
def resume(
    job_id: str, server: ServerOpt = None, token: TokenOpt = None, tls_ca: CaOpt = None
) -> None:
    """Continue a FAILED or CANCELLED job from its last checkpoint (fresh failure budget)."""
    job = _with_client(server, token, tls_ca, lambda client: client.resume(job_id))
    Console().print(f"{job.job_id}: {_state(job)} (resuming from its last checkpoint)")


@app.command()
def delete(
    job_id: str, server: ServerOpt = None, token: TokenOpt = None, tls_ca: CaOpt = None
) -> None:
    """Delete a finished job's record and run directory."""
    _with_client(server, token, tls_ca, lambda client: client.delete(job_id))
    Console().print(f"deleted {job_id}")


@app.command()
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
    path = _with_client(server, token, tls_ca, lambda client: client.export(job_id, target, fmt))
    Console().print(f"wrote {path} ({path.stat().st_size:,} bytes)")


@app.command()
def plot(
    target: Annotated[str, typer.Argument(help="a run directory, or a job id on the service")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write")] = Path(
        "curves.png"
    ),
    server: ServerOpt = None,
    token: TokenOpt = None,
    tls_ca: CaOpt = None,
) -> None:
    """Draw training vs validation loss and accuracy against steps (gap shaded, best step marked)."""
    from ps.plot import plot_curves

    run_dir = Path(target)
    if not run_dir.is_dir():
        try:
            with _client(server, token, tls_ca) as client:
                run_dir = Path(client.get(target).run_dir)
        except Exception as exc:  # noqa: BLE001
            _grpc_fail(exc)
    try:
        path = plot_curves(run_dir, output)
    except (FileNotFoundError, ValueError) as exc:
        _fail(PSError(str(exc)))
    Console().print(f"wrote {path}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
