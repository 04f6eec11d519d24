"""Pure parameter-server logic: the sharding plan, the clock gate and the shard core."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ps.protocol.messages import Push
from ps.server.config import ShardConfig
from ps.server.gate import ClockGate
from ps.server.shard import ShardCore
from ps.server.slices import param_slices


def test_plan_is_contiguous_and_balanced():
    assert param_slices(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert param_slices(5, 1) == [(0, 5)]
    with pytest.raises(ValueError, match="3 shards for only 2 parameters"):
        param_slices(2, 3)


def test_gate_bounds():
    sync, ssp, asy = (
        ClockGate.for_mode("sync", 2, 5),
        ClockGate.for_mode("ssp", 2, 2),
        ClockGate.for_mode("async", 2, 0),
    )
    assert sync.staleness == 0 and ssp.staleness == 2 and asy.staleness == math.inf
    ssp.tick(0, 3)
    assert ssp.may_pull(2) and not ssp.may_pull(3)
    ssp.tick(1, 1)
    assert ssp.may_pull(3)
    assert asy.may_pull(10**9)


def core(mode="sync", workers=2, **kw):
    config = ShardConfig.make(
        0, {"name": "sgd", "lr": 1.0}, offset=0, size=4, mode=mode, workers=workers, **kw
    )
    return ShardCore(config, np.zeros(4, np.float32))


def test_sync_averages_the_finite_gradients_of_a_step():
    c = core(workers=3)
    assert c.push(Push(0, 1, 0, 0), np.full(4, 3.0, np.float32)) == "accumulated"
    bad = np.full(4, np.nan, np.float32)
    assert c.push(Push(1, 1, 0, 0), bad) == "rejected"
    assert c.push(Push(2, 1, 0, 0), np.full(4, 1.0, np.float32)) == "applied"
    np.testing.assert_allclose(c.params.numpy(), -2.0)  # mean of 3 and 1, NaN left out
    assert c.version == 1 and c.rejected["non_finite"] == 1


def test_a_step_whose_gradients_were_all_rejected_is_skipped():
    c = core(workers=1)
    assert c.push(Push(0, 1, 0, 0), np.full(4, np.inf, np.float32)) == "rejected"
    assert c.version == 0 and c.gate.min_clock == 1
    np.testing.assert_array_equal(c.params.numpy(), 0)


def test_max_version_stops_updates():
    c = core(mode="async", workers=1, max_version=2)
    for seq in (1, 2, 3):
        c.push(Push(0, seq, 0, 0), np.ones(4, np.float32))
    assert c.version == 2 and c.stopped and c.after_stop == 1 and not c.rejected
    reply = c.read(3)
    assert reply.stop and reply.version == 2


def test_snapshots_and_checkpoints_are_captured_at_their_versions():
    c = core(mode="async", workers=1, snapshot_every=2, checkpoint_every=3)
    for seq in range(1, 7):
        c.push(Push(0, seq, seq - 1, seq - 1), np.ones(4, np.float32))
    assert sorted(c.snapshots) == [2, 3, 4, 6]
    assert "state" in c.snapshots[3] and "state" not in c.snapshots[2]
    np.testing.assert_allclose(c.take_snapshot(4)["params"], -4.0)
    assert c.take_snapshot(4) is None


def test_overflowing_but_finite_gradients_are_accepted():
    c = core(mode="async", workers=1)
    big = np.full(4, 3e38, np.float32)  # the float32 sum overflows; every element is finite
    assert c.push(Push(0, 1, 0, 0), big) == "applied"


def test_a_replayed_sync_step_reads_the_parameters_from_before_the_step():
    """Worker 1 died after its push of step 1 reached this shard but not another: its
    replacement pulls at clock 0 and must get the parameters step 1 started from."""
    c = core(workers=2, shards=2)
    c.push(Push(0, 1, 0, 0), np.full(4, 1.0, np.float32))
    assert c.push(Push(1, 1, 0, 0), np.full(4, 3.0, np.float32)) == "applied"
    replay = c.read(0)
    np.testing.assert_array_equal(replay.params, 0.0)
    assert replay.version == 0 and replay.min_clock == 0
    np.testing.assert_array_equal(c.read(1).params, -2.0)  # the others read the new ones
    assert c.push(Push(1, 1, 0, 0), np.full(4, 3.0, np.float32)) == "duplicate"


def test_a_malformed_push_changes_nothing_not_even_its_sequence_number():
    c = core(mode="async", workers=1)
    with pytest.raises(ValueError, match="gradient of shape"):
        c.push(Push(0, 1, 0, 0), np.ones(3, np.float32))
    assert c.worker_clock(0) == 0 and c.version == 0
    assert c.push(Push(0, 1, 0, 0), np.ones(4, np.float32)) == "applied"  # seq 1 is still free


def _grad(value: float) -> np.ndarray:
    return np.full(4, value, np.float32)


def test_a_hand_back_in_sync_mode_stops_at_a_whole_step_not_inside_one():
    c = core(workers=2)
    c.push(Push(0, 1, 0, 0), _grad(1.0))
    c.push(Push(1, 1, 0, 0), _grad(3.0))  # step 1 applied
    c.push(Push(0, 2, 1, 1), _grad(1.0))  # step 2 half taken
    step = c.hold()
    assert step == 3  # worker 0 may already compute step 3 from the parameters after step 2
    assert c.may_pull(1) and not c.may_pull(3)
    c.stop_after(step)
    assert not c.stopped
    c.push(Push(1, 2, 1, 1), _grad(3.0))  # step 2 whole
    c.push(Push(0, 3, 2, 2), _grad(1.0))
    assert not c.stopped and not c.may_pull(3)
    c.push(Push(1, 3, 2, 2), _grad(3.0))  # step 3 whole: stop here
    assert c.stopped and c.version == 3
    c.push(Push(0, 4, 3, 3), _grad(1.0))  # refused after the stop: not in the checkpoint
    taken = c.checkpoint()
    assert taken["version"] == 3
    assert taken["state"]["clocks"] == [3, 3] and taken["state"]["last_seq"] == [3, 3]
    # Resumed from it, the next step is the one a run without the hand-back takes.
    resumed = core(workers=2)
    resumed.load_state_dict(taken["state"])
    reference = core(workers=2)
    for seq in range(1, 5):
        for worker, value in ((0, 1.0), (1, 3.0)):
            reference.push(Push(worker, seq, seq - 1, seq - 1), _grad(value))
            if seq == 4:
                resumed.push(Push(worker, seq, seq - 1, seq - 1), _grad(value))
    assert resumed.version == reference.version == 4
    np.testing.assert_array_equal(resumed.params.numpy(), reference.params.numpy())


def test_the_shards_of_a_hand_back_stop_after_the_same_step():
    ahead, behind = core(workers=2), core(workers=2)
    for c in (ahead, behind):
        c.push(Push(0, 1, 0, 0), _grad(1.0))
        c.push(Push(1, 1, 0, 0), _grad(1.0))
    ahead.push(Push(0, 2, 1, 1), _grad(1.0))  # worker 0 reached this shard first
    step = max(ahead.hold(), behind.hold())
    assert step == 3
    for c in (ahead, behind):
        c.stop_after(step)
    for seq, worker in ((2, 0), (2, 1), (3, 0), (3, 1)):
        for c in (ahead, behind):
            if c.last_seq[worker] < seq:
                c.push(Push(worker, seq, seq - 1, seq - 1), _grad(1.0))
    assert ahead.stopped and behind.stopped
    assert ahead.checkpoint()["version"] == behind.checkpoint()["version"] == 3


def test_a_hand_back_in_async_mode_stops_at_once_and_keeps_refused_pushes_out():
    c = core(mode="async", workers=2)
    c.push(Push(0, 1, 0, 0), _grad(1.0))
    assert c.hold() is None and c.stopped
    assert c.push(Push(1, 1, 0, 0), _grad(1.0)) == "stopped"
    taken = c.checkpoint()
    assert taken["version"] == 1 and taken["state"]["last_seq"] == [1, 0]
