"""``psctl plot``: learning curves of a run directory, or of a job on the service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ps.cli.common import fail, grpc_fail
from ps.cli.jobs import CaOpt, ServerOpt, TokenOpt, client
from ps.errors import PSError


def plot(
    target: Annotated[
        str, typer.Argument(help="a run directory, or a job id on the service", metavar="TARGET")
    ],
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
            with client(server, token, tls_ca) as c:
                run_dir = Path(c.get(target).run_dir)
        except Exception as exc:  # noqa: BLE001
            grpc_fail(exc)
    try:
        path = plot_curves(run_dir, output)
    except (FileNotFoundError, ValueError) as exc:
        fail(PSError(str(exc)))
    Console().print(f"wrote {path}")
