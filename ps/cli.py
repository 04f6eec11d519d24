"""psctl: the one command-line tool. Domain errors become messages and exit codes here only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ps.errors import PSError, SpecError

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
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        )
        self.task = None
        self.fields = {"epoch": 0.0, "loss": None, "val_acc": None, "sps": None}

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
        if f["sps"] is not None:
            parts.append(f"{f['sps']:,.0f} samples/s")
        return "  ".join(parts)

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "state" and event["state"] == "RUNNING":
            self.task = self.progress.add_task("training", total=event["total_steps"], info="")
        if self.task is None:
            return
        if kind == "progress":
            self.fields.update(
                epoch=event["epoch"], loss=event["train_loss"], sps=event["samples_per_s"]
            )
            self.progress.update(
                self.task, completed=min(event["step"], event["total_steps"]), info=self._info()
            )
        elif kind == "evaluation":
            self.fields.update(epoch=event["epoch"], val_acc=event["val_accuracy"])
            if event["val_loss"] is None:
                self.fields["loss"] = event["train_loss"]
            self.progress.update(self.task, completed=event["step"], info=self._info())
        elif kind == "result":
            self.progress.update(self.task, completed=event["result"]["steps"])


def print_result(result: dict[str, Any]) -> None:
    table = Table(title=f"job {result['job_id']} — {result['state']} ({result['stop_reason']})")
    table.add_column("")
    table.add_column("loss", justify="right")
    table.add_column("accuracy", justify="right")
    fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    for split in ("train", "val", "test"):
        table.add_row(split, fmt(result[f"{split}_loss"]), fmt(result[f"{split}_accuracy"]))
    Console().print(table)
    Console().print(
        f"steps {result['steps']}  epochs {result['epochs']:.2f}  "
        f"wall {result['wall_time_s']:.1f}s  {result['samples_per_s']:,.0f} samples/s  "
        f"rejected gradients {sum(result['rejected_gradients'].values())}"
    )


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="job spec (YAML or JSON)")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="run directory")] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="existing Ray cluster (else RAY_ADDRESS, else embedded)"
        ),
    ] = None,
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
        print(json.dumps(result, indent=2, default=str))
    else:
        print_result(result)
        Console().print(f"run directory: {out}  (model: {out / 'model.pt'})")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
