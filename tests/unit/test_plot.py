"""psctl plot: learning curves from a run directory."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ps.cli import app
from ps.plot import plot_curves


def _run_dir(tmp_path, with_accuracy=True):
    events = [{"type": "progress", "step": 1}]
    for step in range(10, 110, 10):
        events.append(
            {
                "type": "evaluation",
                "step": step,
                "train_loss": 1 / step,
                "val_loss": 1 / step + 0.01 * step,
                "train_accuracy": 0.9 if with_accuracy else None,
                "val_accuracy": 0.8 if with_accuracy else None,
            }
        )
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    (tmp_path / "result.json").write_text(
        json.dumps(
            {
                "job_id": "j",
                "name": "toy",
                "steps": 100,
                "best_step": 40,
                "stop_reason": "early_stopping",
                "test_accuracy": 0.8,
            }
        )
    )
    return tmp_path


@pytest.mark.parametrize("with_accuracy", [True, False])
def test_plot_writes_a_png(tmp_path, with_accuracy):
    out = plot_curves(_run_dir(tmp_path, with_accuracy), tmp_path / "out" / "curves.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_cli_plot_and_its_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["plot", str(_run_dir(tmp_path)), "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["plot", str(empty), "-o", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "not found: is" in " ".join(result.output.split())
