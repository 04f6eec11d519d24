"""What ``psctl run`` does with its output directory: a new run needs an empty one, an earlier
run is replaced only when asked (``--overwrite``) or continued (``--resume``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from ps.cli.common import EXIT_SPEC, console
from ps.server.checkpoint import checkpoint_step, latest_checkpoint


def prepare_output(out: Path, overwrite: bool, resume: bool) -> None:
    """Check (and with ``overwrite`` empty) the run directory; exits 2 with the reason when
    it cannot be used as asked."""
    if overwrite and resume:
        _refuse("--overwrite and --resume exclude each other: replace the run, or continue it")
    earlier = out.is_dir() and any(out.iterdir())
    checkpoint = latest_checkpoint(out / "checkpoints") if earlier else None
    if resume:
        if checkpoint is None:
            _refuse(f"nothing to resume in {out}: it holds no checkpoint")
        return
    if not earlier:
        return
    if not overwrite:
        held = f" (last checkpoint: step {checkpoint_step(checkpoint)})" if checkpoint else ""
        _refuse(
            f"{out} holds an earlier run{held}: pass --overwrite to replace it, --resume to "
            "continue it from its last checkpoint, or choose another --output"
        )
    if not (out / "spec.yaml").is_file():
        _refuse(f"{out} is not a run directory (no spec.yaml): not replacing it")
    shutil.rmtree(out)


def interrupted(spec: Path, out: Path, step: int | None) -> None:
    """Say where an interrupted run stopped and how to continue it."""
    where = f" at step {step}" if step is not None else ""
    checkpoint = latest_checkpoint(out / "checkpoints") if out.is_dir() else None
    if checkpoint is None:
        console.print(f"interrupted{where}; no checkpoint was written yet")
        return
    console.print(
        f"interrupted{where}; last checkpoint {checkpoint} (step {checkpoint_step(checkpoint)})\n"
        f"continue with: psctl run {spec} --output {out} --resume",
        highlight=False,
        soft_wrap=True,  # paths and the command stay whole, to be copied
    )


def _refuse(message: str) -> None:
    console.print(
        f"[red]cannot use the output directory:[/red] {message}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(EXIT_SPEC)
