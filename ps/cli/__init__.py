"""psctl: the one command-line tool. Domain errors become messages and exit codes here only.

The commands live by concern: ``local`` (psctl run), ``serving`` (psctl serve), ``jobs`` (the
service client commands), ``curves`` (psctl plot); ``common`` holds the exit codes and error
printing, ``output`` the result and job printing, ``progress`` the live progress display. This
module builds the app, registering the commands in the order ``psctl --help`` lists them."""

from __future__ import annotations

import sys

import typer

from ps.cli.common import EXIT_FAILED, EXIT_RESOURCES, EXIT_SPEC, console, fail, grpc_fail
from ps.cli.curves import plot
from ps.cli.jobs import cancel, delete, export, list_jobs, resume, status, submit, watch
from ps.cli.local import run
from ps.cli.output import job_dict, print_job, print_result, state_name
from ps.cli.progress import ProgressView, event_fields
from ps.cli.serving import serve

__all__ = [
    "EXIT_FAILED",
    "EXIT_RESOURCES",
    "EXIT_SPEC",
    "ProgressView",
    "app",
    "cancel",
    "console",
    "delete",
    "event_fields",
    "export",
    "fail",
    "grpc_fail",
    "job_dict",
    "list_jobs",
    "main",
    "plot",
    "print_job",
    "print_result",
    "resume",
    "run",
    "serve",
    "state_name",
    "status",
    "submit",
    "watch",
]

app = typer.Typer(
    help="Parameter-server training on Ray.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: paragraphs rewrapped to the terminal, no type column squeezing the
    # text (rich renders docstrings line by line and shows `<bool>` for --help).
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Parameter-server training on Ray: run jobs locally or against a training service."""


app.command()(run)
app.command()(serve)
app.command()(submit)
app.command()(watch)
app.command()(status)
app.command("list")(list_jobs)
app.command()(cancel)
app.command()(resume)
app.command()(delete)
app.command()(export)
app.command()(plot)


def main() -> None:
    """The ``psctl`` console script: run the app; Ctrl-C exits 130 with a short message."""
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
