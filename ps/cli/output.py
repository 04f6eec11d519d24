"""How psctl prints results and jobs: the result table, one job's summary, and the JSON forms."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from ps.jobs.events import JobResult


def print_result(result: JobResult) -> None:
    """Print a finished job's losses and accuracies (AUC where measured), then its totals."""
    title = f"job {result.job_id} — SUCCEEDED ({result.stop_reason})"  # only success has one
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


def job_dict(job) -> dict[str, Any]:
    """A service job message as a JSON-ready dict, with the proto's field names and the state
    spelled as everywhere else (``SUCCEEDED``, not the proto's ``JOB_STATE_SUCCEEDED``)."""
    from google.protobuf import json_format

    out = json_format.MessageToDict(job, preserving_proto_field_name=True)
    out["state"] = state_name(job)
    return out


def state_name(job) -> str:
    """A service job message's state, as its JobState value."""
    from ps.api.convert import state_from_proto

    return state_from_proto(job.state).value


def print_job(job) -> None:
    """Print one service job: id, name, state, progress, result, error and run directory."""
    out = Console()
    out.print(f"[bold]{job.job_id}[/bold]  {job.name or ''}  [cyan]{state_name(job)}[/cyan]")
    if job.HasField("progress"):
        p = job.progress
        loss = f"  loss {p.train_loss:.4f}" if p.HasField("train_loss") else ""
        out.print(f"  step {p.step}/{p.total_steps}  epoch {p.epoch:.2f}{loss}")
    if job.HasField("result"):
        print_result(JobResult.from_dict(json.loads(job.result.result_json)))
    if job.error:
        out.print(f"  [red]error:[/red] {job.error}")
    out.print(f"  run directory: {job.run_dir}")
