"""The experiments' runner: every experiment is listed with its claim, and every plot draws."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "examples" / "experiments" / "run.py"


def _runner():
    spec = importlib.util.spec_from_file_location("experiments_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_experiment_is_listed_and_an_unknown_one_is_refused():
    listed = subprocess.run([sys.executable, str(RUNNER), "--list"], capture_output=True, text=True)
    assert listed.returncode == 0
    names = [line.split(":")[0] for line in listed.stdout.splitlines()]
    assert names == list(_runner().EXPERIMENTS)
    bad = subprocess.run([sys.executable, str(RUNNER), "nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown experiment" in bad.stderr


def test_every_kind_of_plot_draws_from_results(tmp_path, monkeypatch):
    run = _runner()
    monkeypatch.setattr(run, "OUT", tmp_path)
    history = [
        {"step": s, "train_loss": 1 / s, "val_loss": 2 / s, "val_accuracy": 0.5} for s in (1, 2)
    ]
    rows = [
        {"variant": f"batch {b}", "train loss": 0.1, "val loss": 0.2, "generalization gap": 0.1,
         "test_accuracy": 0.9, "wall s": 1.0, "zero weights": 0.5, "_history": history,
         "_weights": [0.0, 0.1, -0.01]}
        for b in (8, 32)
    ]  # fmt: skip
    for name, draw in (
        ("capacity", run._curves), ("dropout-vs-bagging", run._bars("test_accuracy", "acc")),
        ("l1-vs-l2", run._weights), ("batch-size", run._batch),
    ):  # fmt: skip
        run.write(name, rows, draw)
        assert (tmp_path / name / "plot.png").stat().st_size > 1000
        assert "| variant |" in (tmp_path / name / "results.md").read_text()
