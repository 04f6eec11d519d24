"""An ensemble trains its members as one job: a member's worker killed mid-job is replaced as in
any job, and the ensemble's model is exactly its members' networks combined."""

from __future__ import annotations

import json

import pytest
import ray
import torch

from ps.jobs.admission import admit, check_fits
from ps.jobs.errors import ResourceError
from ps.spec import parse_spec
from tests.chaos.conftest import kill_actor, shard_version
from tests.chaos.test_worker_and_shard import _in_thread
from tests.conftest import wait_until
from workers.data import load_dataset
from workers.ensemble import EnsembleNet
from workers.models import load_model

MEMBERS = 2


def ensemble_job() -> dict:
    return {
        "seed": 2,
        "data": {"source": "digits"},
        "model": {
            "layers": [
                {"type": "dense", "units": 32, "activation": "relu"},
                {"type": "dense", "units": 10},
            ]
        },
        "optimizer": {"name": "adam", "lr": 0.005},
        "training": {
            "workers": 1, "batch_size": 16, "epochs": 4, "worker_resources": {"num_cpus": 0.5},
        },
        "ensemble": {"members": MEMBERS, "combine": "vote"},
    }  # fmt: skip


def test_a_member_worker_killed_mid_job_is_replaced_and_the_ensemble_is_its_members(
    ray_runtime, tmp_path
):
    thread, box = _in_thread(ensemble_job(), tmp_path, "ens")
    wait_until(lambda: shard_version("ens.m1") >= 100, 120, what="member 1 at step 100")
    kill_actor("ps:ens.m1:worker:0")
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.worker_restarts == 1
    assert [m["worker_restarts"] for m in result.members] == [0, 1]
    assert all(m["steps"] == m["total_steps"] for m in result.members)
    assert result.steps == result.total_steps == sum(m["total_steps"] for m in result.members)
    # The exported ensemble is the members' exported networks, voting.
    model = load_model(tmp_path / "model.pt")
    members = [load_model(tmp_path / "members" / str(k) / "model.pt") for k in range(MEMBERS)]
    assert isinstance(model.net, EnsembleNet) and len(model.net.members) == MEMBERS
    spec = parse_spec(ensemble_job())
    data = load_dataset(spec.data, "cross_entropy", spec.seed)
    x = torch.from_numpy(data.x_test)
    direct = EnsembleNet([m.net for m in members], "vote", "cross_entropy")(x).argmax(-1)
    assert torch.equal(model.net(x).argmax(-1), direct)
    accuracy = (direct.numpy() == data.y_test).mean()
    assert result.test_accuracy == pytest.approx(accuracy)
    member_acc = [m["test_accuracy"] for m in result.members]
    assert len(set(member_acc)) > 1  # bootstrap samples and seeds differ
    program = torch.export.load(tmp_path / "model.pt2").module()
    raw = x * torch.from_numpy(data.scale) + torch.from_numpy(data.shift)
    assert torch.equal(program(raw).argmax(-1), direct)
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {e.get("member") for e in history if e["type"] == "evaluation"} == {0, 1}
    assert [e["member"] for e in history if e["type"] == "worker_restart"] == [1]


def test_an_ensemble_larger_than_the_cluster_is_refused_before_any_actor(ray_runtime):
    job = ensemble_job()
    job["ensemble"]["members"] = 64
    with pytest.raises(ResourceError, match="ensemble.members"):
        check_fits(admit(parse_spec(job)), ray.cluster_resources())
