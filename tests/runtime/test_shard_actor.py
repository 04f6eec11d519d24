"""The shard actor over real Ray: non-finite gradients, duplicates, and the gate."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from ps.protocol.messages import PullRequest, Push
from ps.server.actor import ParameterShard
from ps.server.config import ShardConfig
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
    before = ray.get(shard.pull.remote(PullRequest(0)))
    grad = np.ones(8, np.float32)
    grad[3] = bad
    assert ray.get(shard.push.remote(Push(0, 1, 0, 0, 1.0), grad)) == "rejected"
    after = ray.get(shard.pull.remote(PullRequest(1)))
    np.testing.assert_array_equal(after.params, before.params)
    assert after.version == 0
    assert ray.get(shard.stats.remote()).rejected == {"non_finite": 1}
    # A good gradient afterwards is applied: p - lr·g (k pushes of g give p0 - k·lr·g).
    for seq in (2, 3):
        assert (
            ray.get(shard.push.remote(Push(0, seq, seq - 2, 0, 1.0), np.ones(8, np.float32)))
            == "applied"
        )
    np.testing.assert_allclose(
        ray.get(shard.pull.remote(PullRequest(3))).params, np.arange(8) - 2 * 0.5
    )
    ray.kill(shard)


def test_duplicate_push_is_applied_once(ray_runtime):
    shard = make_shard()
    g = np.ones(8, np.float32)
    assert ray.get(shard.push.remote(Push(0, 1, 0, 0), g)) == "applied"
    assert ray.get(shard.push.remote(Push(0, 1, 0, 0), g)) == "duplicate"
    r = ray.get(shard.pull.remote(PullRequest(1)))
    assert r.version == 1
    np.testing.assert_allclose(r.params, np.arange(8) - 0.5)
    ray.kill(shard)


def test_sync_pull_waits_for_every_worker_then_sees_the_averaged_update(ray_runtime):
    shard = make_shard(mode="sync", workers=2)
    ray.get(shard.pull.remote(PullRequest(0)))
    assert (
        ray.get(shard.push.remote(Push(0, 1, 0, 0), np.full(8, 2.0, np.float32))) == "accumulated"
    )
    waiting = shard.pull.remote(PullRequest(1))
    ready, _ = ray.wait([waiting], timeout=0.3)
    assert not ready, "worker 0 must wait for worker 1's gradient of the same step"
    assert ray.get(shard.push.remote(Push(1, 1, 0, 0), np.full(8, 4.0, np.float32))) == "applied"
    r = ray.get(waiting, timeout=10)
    assert r.version == 1
    np.testing.assert_allclose(r.params, np.arange(8) - 0.5 * 3.0)
    ray.kill(shard)


def test_ssp_lets_a_worker_run_ahead_by_the_bound_only(ray_runtime):
    shard = make_shard(mode="ssp", workers=2, staleness=2)
    g = np.zeros(8, np.float32)
    for seq in (1, 2):
        ray.get(shard.push.remote(Push(0, seq, 0, 0), g))
    assert ray.get(shard.pull.remote(PullRequest(2)), timeout=10).min_clock == 0  # 2 ahead: allowed
    ray.get(shard.push.remote(Push(0, 3, 0, 0), g))
    blocked = shard.pull.remote(PullRequest(3))
    assert not ray.wait([blocked], timeout=0.3)[0], "3 ahead of the slowest worker must wait"
    ray.get(shard.push.remote(Push(1, 1, 0, 0), g))
    wait_until(lambda: ray.wait([blocked], timeout=0)[0], what="pull released by worker 1's push")
    ray.kill(shard)


@ray.remote(num_cpus=0)
class _Client:
    """A worker's transport in its own process (as a worker actor has it)."""

    def round_trip(self, shard, token, transport="auto"):
        from workers.transport import ShardClient, StepPull, StepPush

        client = ShardClient(0, [shard], [(0, 8)], 8, token=token, transport=transport)
        try:
            first = client.pull(StepPull(0))
            client.grads.fill_(1.0)
            client.send(StepPush(1, 0, 0, 1.0), StepPull(1))
            acks, second = client.acks(), client.read()
            return client.kinds, first, acks, second, client.state.numpy().tolist()
        finally:
            client.close()


def test_channels_and_the_fallback_when_a_channel_cannot_be_built(ray_runtime):
    import secrets

    from ps.server.actor import ParameterShard
    from ps.server.config import ShardConfig

    token = secrets.token_bytes(32)
    for given, kind in ((token, "shm"), (secrets.token_bytes(32), "ray-shm")):
        config = ShardConfig.make(
            0, {"name": "sgd", "lr": 0.5}, offset=0, size=8, mode="async", token=token
        )
        shard = ray.remote(ParameterShard).remote(config, np.arange(8, dtype=np.float32))
        # A wrong secret is refused by the shard; the worker falls back to Ray calls.
        kinds, first, acks, second, state = ray.get(
            _Client.remote().round_trip.remote(shard, given)
        )
        assert kinds == [kind] and first == (0, 0) and acks == ["applied"] and second == (1, 1)
        np.testing.assert_allclose(state, np.arange(8) - 0.5)
        ray.kill(shard)
