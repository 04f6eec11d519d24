"""Determinism: a deterministic full-batch job equals a plain torch.optim loop step for step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.runtime.helpers import flat_params, run, spec
from workers.models import load_model

STEPS = 30
L2 = 0.01
OPTIMIZERS = {
    "sgd": ({"name": "sgd", "lr": 0.1}, lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=L2)),
    "momentum": (
        {"name": "momentum", "lr": 0.05},
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=L2),
    ),
    "nag": (
        {"name": "nag", "lr": 0.05},
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=L2),
    ),
    "adam": ({"name": "adam", "lr": 0.01}, lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=L2)),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    path = tmp_path_factory.mktemp("data") / "toy.npz"
    np.savez(path, X=x, y=y)
    return path, x, y


def deterministic_spec(path, optimizer, workers=1, shards=1, max_steps=STEPS):
    return spec(
        data={
            "source": str(path),
            "validation_split": 0,
            "test_split": 0,
            "shuffle": False,
            "normalize": "none",
        },
        model={
            "layers": [
                {"type": "dense", "units": 16, "activation": "tanh"},
                {"type": "dense", "units": 3},
            ]
        },
        optimizer=optimizer,
        regularization={"l2": L2},
        training={
            "workers": workers,
            "mode": "sync",
            "batch_size": 1000,
            "epochs": 1000,
            "max_steps": max_steps,
        },
        ps={"shards": shards},
    )


@pytest.fixture(scope="module")
def initial(ray_runtime, dataset, tmp_path_factory):
    """The initial weights, exported untouched by a max_steps: 0 job."""
    out = tmp_path_factory.mktemp("init")
    result = run(deterministic_spec(dataset[0], {"name": "sgd"}, max_steps=0), out)
    assert result.steps == 0
    return out


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_full_batch_job_matches_torch_optim(ray_runtime, dataset, initial, tmp_path, name):
    path, x, y = dataset
    ours_cfg, make_torch = OPTIMIZERS[name]
    result = run(deterministic_spec(path, ours_cfg), tmp_path)
    assert result.steps == STEPS and result.stop_reason == "max_steps"

    model = load_model(initial / "model.pt")
    net = model.net.train()
    opt = make_torch(net.parameters())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    expected = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    torch.testing.assert_close(flat_params(tmp_path), expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(flat_params(tmp_path), flat_params(initial))


@pytest.fixture(scope="module")
def adam_runs(ray_runtime, dataset, tmp_path_factory):
    """20 full-batch Adam steps for a (workers, shards, transport), each run once per module;
    returns (result, flat parameters). No shared-memory file may outlive a run."""
    from ps.jobs.runner import run_job
    from ps.protocol import shm
    from ps.spec import parse_spec

    cache = {}

    def get(workers: int, shards: int, transport: str = "auto"):
        key = (workers, shards, transport)
        if key not in cache:
            job = deterministic_spec(
                dataset[0], {"name": "adam", "lr": 0.01}, workers, shards, max_steps=20
            )
            job["training"]["transport"] = transport
            job_id = f"adam-{workers}-{shards}-{transport}"
            out = tmp_path_factory.mktemp(job_id)
            result = run_job(parse_spec(job), out, job_id=job_id)
            assert shm.existing(shm.prefix(job_id)) == []  # no shared-memory file outlives it
            cache[key] = (result, flat_params(out))
        return cache[key]

    return get


@pytest.mark.parametrize(("workers", "shards"), [(2, 1), (1, 2), (2, 2)])
def test_sync_workers_and_shards_give_the_same_parameters(adam_runs, workers, shards):
    """120 rows split 60/60: the average of two half-batch means is the full-batch mean."""
    single, single_params = adam_runs(1, 1)
    multi, multi_params = adam_runs(workers, shards)
    assert single.steps == multi.steps == 20
    torch.testing.assert_close(multi_params, single_params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("workers", "shards"), [(1, 1), (2, 2)])
def test_every_transport_gives_identical_parameters(adam_runs, workers, shards):
    """Shared-memory channels, inline channels and Ray calls: bit-identical results."""
    result, shared = adam_runs(workers, shards, "auto")
    assert {kind for w in result.workers for kind in w["links"]} == {"shm"}
    for transport, kind in (("stream", "unix"), ("object_store", "ray")):
        other, params = adam_runs(workers, shards, transport)
        assert {k for w in other.workers for k in w["links"]} == {kind}
        assert torch.equal(shared, params), transport


def test_no_channel_outlives_its_shard(adam_runs):
    """The channels listen on abstract Unix sockets (no file) and TCP: nothing is left once
    the shards are gone."""
    result, _ = adam_runs(2, 2, "auto")
    pids = {s["pid"] for s in result.shards}
    assert pids and all(pid > 0 for pid in pids)
    names = Path("/proc/net/unix").read_text()
    assert not [pid for pid in pids if f"@ps-channel-{pid}-" in names]
