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
        fail(exc)
    if json_out:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_result(result)
        Console().print(f"run directory: {out}  (model: {out / 'model.pt'})")
