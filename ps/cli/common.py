"""What every psctl command shares: the stderr console, exit codes, and the one place where
domain and RPC errors become a message and an exit code."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from ps.errors import PSError, SpecError

console = Console(stderr=True)

EXIT_SPEC, EXIT_FAILED, EXIT_RESOURCES = 2, 1, 3

RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", help="existing Ray cluster (else RAY_ADDRESS, else embedded)"),
]


def fail(exc: Exception) -> None:
    """Print a domain error and exit: 2 for a bad spec, 3 for missing resources, else 1."""
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


def grpc_fail(exc: Exception) -> None:
    """Print an RPC or domain error and exit (a refused request exits 2); re-raise anything else."""
    import grpc

    if isinstance(exc, grpc.RpcError):
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        refused = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
        raise typer.Exit(EXIT_SPEC if exc.code() in refused else EXIT_FAILED)
    if isinstance(exc, PSError):
        fail(exc)
    raise exc
