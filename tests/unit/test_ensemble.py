"""Bagging: bootstrap samples, and the ensemble's outputs as the vote or mean of its members'."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ps.errors import SpecError
from ps.jobs.admission import bootstrap_rows
from ps.spec import parse_spec
from workers.ensemble import EnsembleNet


def test_a_bootstrap_sample_has_the_splits_size_and_about_63_percent_distinct_rows():
    rows = bootstrap_rows(10_000, seed=4)
    assert len(rows) == 10_000 and rows.min() >= 0 and rows.max() < 10_000
    assert abs(len(np.unique(rows)) / 10_000 - (1 - 1 / np.e)) < 0.02
    assert (bootstrap_rows(10_000, 4) == rows).all() and not (
        bootstrap_rows(10_000, 5) == rows
    ).all()


def _members(outputs: int, k: int = 5) -> list[nn.Module]:
    torch.manual_seed(0)
    return [nn.Linear(6, outputs) for _ in range(k)]


def test_vote_is_the_members_majority_and_mean_their_averaged_probabilities():
    members, x = _members(4), torch.randn(200, 6)
    outs = torch.stack([m(x) for m in members])
    votes = torch.stack([torch.bincount(col, minlength=4) for col in outs.argmax(-1).T])
    probs = torch.softmax(outs, -1).mean(0)
    vote = EnsembleNet(members, "vote", "cross_entropy")(x).argmax(-1)
    clear = votes.max(1).values > votes.topk(2, dim=1).values[:, 1]  # no tie for the top
    assert torch.equal(vote[clear], votes.argmax(1)[clear])
    tied = ~clear  # ties go to the averaged probability among the tied classes
    top = votes == votes.max(1, keepdim=True).values
    assert torch.equal(vote[tied], torch.where(top, probs, -1).argmax(1)[tied])
    mean = EnsembleNet(members, "mean", "cross_entropy")(x)
    torch.testing.assert_close(torch.softmax(mean, -1), probs)


def test_binary_and_regression_ensembles():
    members, x = _members(1), torch.randn(100, 6)
    outs = torch.stack([m(x) for m in members])
    mean = EnsembleNet(members, "mean", "bce")(x)
    torch.testing.assert_close(
        torch.sigmoid(mean), torch.sigmoid(outs).mean(0), rtol=1e-5, atol=1e-6
    )
    vote = EnsembleNet(members, "vote", "bce")(x)
    assert torch.equal((vote > 0), (outs > 0).float().mean(0) > 0.5)
    torch.testing.assert_close(EnsembleNet(members, "mean", "mse")(x), outs.mean(0))


@pytest.mark.parametrize(
    ("ensemble", "model", "path"),
    [
        ({"members": 1}, None, "ensemble.members"),
        ({"members": 3, "combine": "vote"}, {"loss": "mse"}, "ensemble.combine"),
        ({"members": 3, "combine": "median"}, None, "ensemble.combine"),
        ({"members": 3}, {"type": "fm", "layers": None}, "ensemble"),
    ],
)
def test_bad_ensembles_are_refused_with_the_key(ensemble, model, path):
    spec = {
        "data": {"source": "synthetic-ctr"} if model and "type" in model else {"source": "digits"},
        "model": {"layers": [{"type": "dense", "units": 10}], **(model or {})},
        "ensemble": ensemble,
    }
    if model and model.get("loss") == "mse":
        spec["data"] = {"source": "synthetic-regression"}
        spec["model"]["layers"] = [{"type": "dense", "units": 1}]
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    assert info.value.path == path, info.value


def test_the_ensembles_progress_sums_its_members_and_a_members_own_is_not_the_jobs(tmp_path):
    """The job's stored progress is the ensemble's (its members' steps out of all members'
    steps); a member's labelled progress does not overwrite it."""
    from ps.jobs.ensemble import _total_progress
    from ps.jobs.events import Progress
    from ps.jobs.scheduler import Scheduler
    from ps.jobs.store import JobStore
    from ps.jobs.subscribers import Subscribers
    from ps.spec import parse_spec

    members = {
        0: Progress(step=30, total_steps=100, epoch=3.0, samples=300, member=0),
        1: Progress(step=50, total_steps=100, epoch=5.0, samples=500, member=1),
    }
    total = _total_progress(members, 300)
    assert (total.step, total.total_steps, total.samples, total.member) == (80, 300, 800, None)
    store = JobStore(tmp_path / "jobs.db")
    spec = parse_spec({"model": {"layers": [{"type": "dense", "units": 2}]}})
    store.create("ens", spec, str(tmp_path / "ens"))
    scheduler = Scheduler(store, Subscribers(), None, "ps")
    scheduler._on_event("ens", total)
    scheduler._on_event("ens", members[1])
    assert store.get("ens").progress.step == 80 and store.get("ens").progress.total_steps == 300
