"""Learning curves from a run's metrics.jsonl: loss and accuracy against steps.

Training vs validation loss (the shaded band between them is the generalization gap) and
accuracy, with the best step and the early-stopping point marked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_history(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The evaluation events of a run, and its result (None while it runs)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run directory?")
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    result_path = run_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else None
    return [e for e in events if e.get("type") == "evaluation"], result


def plot_curves(run_dir: str | Path, out: str | Path) -> Path:
    """Draw the run's curves into ``out`` (PNG); returns the path.

    Raises:
        FileNotFoundError: no metrics.jsonl in ``run_dir``.
        ValueError: the run has no evaluations yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir, out = Path(run_dir), Path(out)
    evals, result = read_history(run_dir)
    # An ensemble's history interleaves its members': draw member 0 (each member's own run
    # directory, members/<k>/, has its curves).
    evals = [e for e in evals if e.get("member") in (None, 0)]
    if not evals:
        raise ValueError(f"{run_dir} has no evaluations yet")
    steps = [e["step"] for e in evals]
    has_val = any(e.get("val_loss") is not None for e in evals)
    has_acc = any(e.get("train_accuracy") is not None for e in evals)
    fig, axes = plt.subplots(
        1, 2 if has_acc else 1, figsize=(12 if has_acc else 6.5, 4.5), squeeze=False
    )
    ax = axes[0][0]
    train = [e["train_loss"] for e in evals]
    ax.plot(steps, train, label="training loss", color="tab:blue")
    if has_val:
        val = [e["val_loss"] for e in evals]
        ax.plot(steps, val, label="validation loss", color="tab:orange")
        ax.fill_between(steps, train, val, color="tab:red", alpha=0.12, label="generalization gap")
    ax.set_xlabel("step (parameter-server updates)")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    if has_acc:
        acc_ax = axes[0][1]
        acc_ax.plot(
            steps, [e["train_accuracy"] for e in evals], label="training accuracy", color="tab:blue"
        )
        if has_val:
            acc_ax.plot(
                steps,
                [e["val_accuracy"] for e in evals],
                label="validation accuracy",
                color="tab:orange",
            )
        acc_ax.set_xlabel("step (parameter-server updates)")
        acc_ax.set_ylabel("accuracy")
    _mark_steps(axes[0], result)
    title = run_dir.name if not result else f"{result.get('name') or result['job_id']}"
    if result and result.get("test_accuracy") is not None:
        title += f" — test accuracy {result['test_accuracy']:.4f}"
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _mark_steps(axes, result: dict[str, Any] | None) -> None:
    """The best step and an early stop as vertical lines on every panel."""
    for a in axes:
        if result and result.get("best_step") is not None:
            a.axvline(
                result["best_step"],
                color="tab:green",
                linestyle="--",
                label=f"best step {result['best_step']}",
            )
        if result and result.get("stop_reason") == "early_stopping":
            a.axvline(
                result["steps"],
                color="tab:gray",
                linestyle=":",
                label=f"early stop at {result['steps']}",
            )
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
