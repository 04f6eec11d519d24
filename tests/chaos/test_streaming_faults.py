"""A worker killed mid-epoch on streamed data: the job makes its full step budget and every
training row is used exactly once per epoch — counted from the data: each row has an id of its
own in an embedding table, and a table row's update count is how many steps used it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ps.hashing import hash_column
from ps.jobs.admission import prepare
from ps.server.checkpoint import read_checkpoint
from ps.spec import parse_spec
from tests.chaos.conftest import kill_actor, shard_version
from tests.chaos.test_worker_and_shard import _in_thread
from tests.conftest import wait_until

ROWS, BUCKETS, EPOCHS = 3000, 2**22, 30


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """Parquet files whose ``rid`` ids do not collide in the table (rows that would are left
    out), so that one table row stands for one data row."""
    root = tmp_path_factory.mktemp("clicks")
    rid = np.arange(ROWS * 2)
    ids = hash_column("rid", pa.array(rid), BUCKETS)
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    rid = np.sort(rid[first[counts == 1]])[:ROWS]
    rng = np.random.default_rng(3)
    for f, part in enumerate(np.array_split(rid, 6)):
        a = rng.normal(size=len(part)).astype(np.float32)
        table = pa.table({"rid": part, "a": a, "y": (a > 0).astype(np.int64)})
        pq.write_table(table, root / f"part-{f}.parquet", row_group_size=150)
    return root


def streamed(clicks, mode: str, every: int | None = None) -> dict:
    spec = {
        "seed": 5,
        "data": {
            "source": str(clicks), "target": "y", "categorical": ["rid"],
            "validation_split": 0.1, "test_split": 0, "shuffle_buffer": 200,
        },
        "model": {"type": "logistic", "embedding": {"buckets": BUCKETS}, "loss": "bce"},
        "sparse_optimizer": {"name": "sgd", "lr": 0.1},
        "training": {"workers": 2, "mode": mode, "batch_size": 32, "epochs": EPOCHS},
        "ps": {"shards": 2},
    }  # fmt: skip
    if every is not None:
        spec["checkpoint"] = {"every_steps": every}
    return spec


@pytest.mark.parametrize(
    ("mode", "victim"), [("sync", "worker:1"), ("async", "worker:1"), ("async", "shard:1")]
)
def test_a_process_killed_mid_epoch_leaves_every_row_used_once_per_epoch(
    ray_runtime, clicks, tmp_path, mode, victim
):
    """Sync: equal shares; async: the ledger's items (a shard loss restores every actor from
    the last checkpoint, and the workers replay their items from its clocks)."""
    data, _, plan = prepare(parse_spec(streamed(clicks, mode)))
    spec = streamed(clicks, mode, every=plan.steps_per_epoch)  # a checkpoint per epoch
    job_id = f"stream-{mode}-{victim.split(':')[0]}"
    thread, box = _in_thread(spec, tmp_path, job_id)
    wait_until(lambda: shard_version(job_id) >= plan.total_steps // 3, 120, what="steps")
    kill_actor(f"ps:{job_id}:{victim}")
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.worker_restarts + result.restores == 1
    assert result.steps == result.total_steps == EPOCHS * plan.steps_per_epoch
    _, states = read_checkpoint(sorted((tmp_path / "checkpoints").iterdir())[-1])
    counts = {}
    for state in states:
        (table,) = state["tables"]["tables"]
        counts.update(zip(table["keys"].tolist(), table["steps"].tolist(), strict=True))
    training = data.stream.n_train
    assert len(counts) == training  # every training row was used, and no held-out row
    assert set(counts.values()) == {EPOCHS}  # each exactly once per epoch
