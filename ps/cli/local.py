"""``psctl run``: train a job spec locally on Ray, with the progress display, and print its
result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ps.cli.common import RayAddressOpt, fail
from ps.cli.output import print_result
from ps.cli.progress import ProgressView
from ps.cli.rundirs import interrupted, prepare_output
from ps.errors import PSError


def run(
    spec: Annotated[Path, typer.Argument(help="job spec (YAML or JSON)", metavar="SPEC")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="run directory (default: runs/<the spec's name or file stem>)"
        ),
    ] = None,
    ray_address: RayAddressOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace an earlier run in the output directory")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="continue the run in the output directory from its last "
            "checkpoint (an interrupted run)",
        ),
    ] = False,
) -> None:
    """Train SPEC to completion on Ray and write the run directory (it must be new or empty,
    unless --overwrite or --resume)."""
    from ps.jobs.events import Evaluation, Progress
    from ps.jobs.runner import ray_session, run_job
    from ps.spec import load_spec

    step: int | None = None
    out: Path | None = None

    def follow(event) -> None:
        nonlocal step
        if isinstance(event, Progress | Evaluation) and event.member is None:
            step = max(step or 0, event.step)
        view(event)

    try:
        job = load_spec(spec)
        out = output or Path("runs") / (job.name or spec.stem)
        prepare_output(out, overwrite, resume)
        with ray_session(ray_address), ProgressView(quiet or json_out) as view:
            result = run_job(job, out, on_event=follow, resume=resume)
    except PSError as exc:
        fail(exc)
    except KeyboardInterrupt:
        if out is None:
            raise
        interrupted(spec, out, step)
        raise typer.Exit(130) from None
    if json_out:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_result(result)
        Console().print(f"run directory: {out}  (model: {out / 'model.pt'})")
