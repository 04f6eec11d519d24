"""psctl's summary of a finished job shows what the job measured: AUC for bce, and an
ensemble's mean member."""

from __future__ import annotations

import dataclasses

from ps.cli import print_result
from ps.jobs.events import JobResult

BASE = JobResult(
    job_id="j", name=None, stop_reason="epochs", steps=10, total_steps=10, epochs=1.0,
    exported_step=10, best_step=None, wall_time_s=1.0, samples=100, samples_per_s=100.0,
    train_loss=0.5, train_accuracy=0.8, val_loss=0.6, val_accuracy=0.7, test_loss=0.6,
    test_accuracy=0.75, final_evaluation=None, n_params=5,
)  # fmt: skip


def test_the_summary_shows_auc_only_for_jobs_that_measured_it(capsys):
    print_result(BASE)
    assert "AUC" not in capsys.readouterr().out
    print_result(dataclasses.replace(BASE, train_auc=0.9, val_auc=0.81, test_auc=0.8123))
    out = capsys.readouterr().out
    assert "AUC" in out and "0.8123" in out


def test_an_ensembles_summary_names_its_mean_member(capsys):
    members = [{"test_accuracy": 0.7}, {"test_accuracy": 0.8}]
    print_result(dataclasses.replace(BASE, members=members))
    assert "ensemble of 2: mean member test accuracy 0.7500" in capsys.readouterr().out
