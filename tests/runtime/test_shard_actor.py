"""The shard actor over real Ray: non-finite gradients, duplicates, and the gate."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from ps.server.shard import ParameterShard, Push, ShardConfig
from tests.conftest import wait_until


def make_shard(mode="async", workers=1, staleness=0, n=8):
    return (
        ray.remote(ParameterShard)
        .options(max_concurrency=100)
        .remote(
            ShardConfig.make(
                0,
                {"name": "sgd", "lr": 0.5},
                offset=0,
                size=n,
                mode=mode,
                workers=workers,
                staleness=staleness,
            ),
            np.arange(n, dtype=np.float32),
        )
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gradient_leaves_parameters_unchanged_and_is_counted(ray_runtime, bad):
    shard = make_shard()
    before = ray.get(shard.pull.remote(0, 0))
    grad = np.ones(8, np.float32)
    grad[3] = bad
    assert ray.get(shard.push.remote(Push(0, 1, 0, 0, 1.0), grad)) == "rejected"
    after = ray.get(shard.pull.remote(0, 1))
    np.testing.assert_array_equal(after["params"], before["params"])
    assert after["version"] == 0
    assert ray.get(shard.stats.remote()).rejected == {"non_finite": 1}
    # A good gradient afterwards is applied: p - lr·g (k pushes of g give p0 - k·lr·g).
    for seq in (2, 3):
        assert (
            ray.get(shard.push.remote(Push(0, seq, seq - 2, 0, 1.0), np.ones(8, np.float32)))
            == "applied"
        )
    np.testing.assert_allclose(ray.get(shard.pull.remote(0, 3))["params"], np.arange(8) - 2 * 0.5)
    ray.kill(shard)


def test_duplicate_push_is_applied_once(ray_runtime):
    shard = make_shard()
    g = np.ones(8, np.float32)
    assert ray.get(shard.push.remote(Push(0, 1, 0, 0), g)) == "applied"
    assert ray.get(shard.push.remote(Push(0, 1, 0, 0), g)) == "duplicate"
    r = ray.get(shard.pull.remote(0, 1))
    assert r["version"] == 1
    np.testing.assert_allclose(r["params"], np.arange(8) - 0.5)
    ray.kill(shard)


def test_sync_pull_waits_for_every_worker_then_sees_the_averaged_update(ray_runtime):
    shard = make_shard(mode="sync", workers=2)
    ray.get(shard.pull.remote(0, 0))
    assert (
        ray.get(shard.push.remote(Push(0, 1, 0, 0), np.full(8, 2.0, np.float32))) == "accumulated"
    )
    waiting = shard.pull.remote(0, 1)
    ready, _ = ray.wait([waiting], timeout=0.3)
    assert not ready, "worker 0 must wait for worker 1's gradient of the same step"
    assert ray.get(shard.push.remote(Push(1, 1, 0, 0), np.full(8, 4.0, np.float32))) == "applied"
    r = ray.get(waiting, timeout=10)
    assert r["version"] == 1
    np.testing.assert_allclose(r["params"], np.arange(8) - 0.5 * 3.0)
    ray.kill(shard)


def test_ssp_lets_a_worker_run_ahead_by_the_bound_only(ray_runtime):
    shard = make_shard(mode="ssp", workers=2, staleness=2)
    g = np.zeros(8, np.float32)
    for seq in (1, 2):
        ray.get(shard.push.remote(Push(0, seq, 0, 0), g))
    assert ray.get(shard.pull.remote(0, 2), timeout=10)["min_clock"] == 0  # 2 ahead: allowed
    ray.get(shard.push.remote(Push(0, 3, 0, 0), g))
    blocked = shard.pull.remote(0, 3)
    assert not ray.wait([blocked], timeout=0.3)[0], "3 ahead of the slowest worker must wait"
    ray.get(shard.push.remote(Push(1, 1, 0, 0), g))
    wait_until(lambda: ray.wait([blocked], timeout=0)[0], what="pull released by worker 1's push")
    ray.kill(shard)
