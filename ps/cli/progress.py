"""The live progress display that ``psctl run``, ``submit --wait`` and ``watch`` feed with job
events."""

from __future__ import annotations

import time
from typing import Any

from rich import progress as bar

from ps.cli.common import console
from ps.jobs.events import (
    Evaluation,
    Event,
    Finished,
    Progress,
    Restored,
    StateChanged,
    WorkerReplaced,
)
from ps.jobs.state import JobState

PLAIN_EVERY_S = 10.0


def event_fields(event: Event) -> dict[str, Any] | None:
    """The display fields one event sets, or None for an event the bar does not show.

    The one place that maps an event kind to what the progress line says: a new kind of event
    gets its branch here."""
    if isinstance(event, Progress):
        return {"epoch": event.epoch, "loss": event.train_loss, "sps": event.samples_per_s}
    if isinstance(event, Evaluation):
        fields = {
            "epoch": event.epoch,
            "val_acc": event.val_accuracy,
            "gap": event.generalization_gap,
            "lr": event.learning_rate,
        }
        if event.val_loss is None:
            fields["loss"] = event.train_loss
        return fields
    return None


def fault_line(event: Restored | WorkerReplaced) -> str:
    """A recovery, as a line of its own above the bar."""
    who = "" if event.member is None else f"member {event.member}: "
    if isinstance(event, Restored):
        what = f"a shard was lost; every actor restored from the checkpoint at step {event.step}"
    else:
        what = f"worker {event.worker} failed; a replacement resumes at step {event.step}"
    return f"{who}{what} ({event.reason})"


def info_line(fields: dict[str, Any]) -> str:
    """The progress line's text: epoch, then whichever of loss, val_acc, gap, lr, samples/s are
    known."""
    f = fields
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


class ProgressView:
    """A live progress bar fed by job events: step, epoch, loss, validation accuracy, samples/s."""

    def __init__(self, quiet: bool = False) -> None:
        # Not a terminal (a log, a pipe, CI): no bar squeezed into 80 columns, but a plain line
        # per evaluation and at most every PLAIN_EVERY_S seconds of progress.
        self.plain = not quiet and not console.is_terminal
        self.last_line = float("-inf")
        self.progress = bar.Progress(
            bar.TextColumn("[bold]{task.description}"),
            bar.BarColumn(),
            bar.TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
            bar.TextColumn("{task.fields[info]}"),
            bar.TimeElapsedColumn(),
            bar.TextColumn("ETA"),
            bar.TimeRemainingColumn(),
            console=console,
            disable=quiet or self.plain,
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

    def __call__(self, event: Event) -> None:
        """Show one job event."""
        if isinstance(event, Restored | WorkerReplaced):
            console.print(f"[yellow]{fault_line(event)}[/yellow]", highlight=False)
            return
        if event.member is not None:  # a member's own: the ensemble's progress sums them
            return
        if isinstance(event, StateChanged) and event.state == JobState.RUNNING:
            if self.task is None:
                self.total = event.total_steps
                self.task = self.progress.add_task("training", total=self.total, info="")
            return
        if self.task is None:
            return
        if isinstance(event, Finished):
            self.progress.update(self.task, completed=event.result.steps)
            return
        fields = event_fields(event)
        if fields is None:
            return
        self.fields.update(fields)
        step = min(event.step, self.total) if self.total else event.step
        self.progress.update(self.task, completed=step, info=info_line(self.fields))
        if self.plain:
            self._plain_line(step, isinstance(event, Evaluation))

    def _plain_line(self, step: int, evaluated: bool) -> None:
        now = time.monotonic()
        if evaluated or now - self.last_line >= PLAIN_EVERY_S:
            self.last_line = now
            line = f"step {step}/{self.total}  {info_line(self.fields)}"
            console.print(line, highlight=False, soft_wrap=True)
