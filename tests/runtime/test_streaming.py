"""Streamed file sets end to end on Ray: a job over many parquet files, several times
``data.max_in_memory``, trains to the same parameters as the same data held in memory (sync,
no shuffle) and to the same accuracy (async), while each worker's peak memory — measured from
/proc by the worker — stays under the documented bound."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ps.jobs.runner import run_job
from ps.spec import parse_spec
from tests.runtime.helpers import flat_params
from workers.data.filesets import inspect_files
from workers.data.streams import block_rows_for, stream_buffer_rows

ROWS, FILES, FEATURES = 240_000, 12, 48
MAX_IN_MEMORY = 2**20  # the data is ~45 times this
SLACK = 8 * 2**20  # pyarrow's memory pool keeps what it freed


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(8)
    w = rng.normal(size=FEATURES)
    per = ROWS // FILES
    for f in range(FILES + 1):  # the last one is the validation file
        x = rng.normal(size=(per if f < FILES else 4000, FEATURES)).astype(np.float32)
        y = (x @ w + rng.normal(size=len(x)) > 0).astype(np.int64)
        table = pa.table({**{f"x{j}": x[:, j] for j in range(FEATURES)}, "y": y})
        name = f"train/part-{f:02d}.parquet" if f < FILES else "val.parquet"
        (root / name).parent.mkdir(exist_ok=True)
        pq.write_table(table, root / name, row_group_size=5000)
    return root


def job(files, mode, streaming, **data):
    return parse_spec(
        {
            "seed": 2,
            "data": {
                "source": str(files / "train"), "target": "y", "streaming": streaming,
                "max_in_memory": MAX_IN_MEMORY, "validation_source": str(files / "val.parquet"),
                "test_split": 0, **data,
            },
            "model": {"layers": [{"type": "dense", "units": 2}]},
            "optimizer": {"name": "sgd", "lr": 0.1},
            "training": {"workers": 2, "mode": mode, "batch_size": 1000, "epochs": 1},
        }
    )  # fmt: skip


def test_a_streamed_sync_job_equals_the_same_data_in_memory_within_the_memory_bound(
    ray_runtime, files, tmp_path
):
    streamed = run_job(job(files, "sync", True, shuffle=False), tmp_path / "stream")
    memory = run_job(job(files, "sync", False, shuffle=False), tmp_path / "memory")
    assert streamed.steps == memory.steps == streamed.total_steps == 120
    assert streamed.samples == memory.samples == ROWS
    torch.testing.assert_close(
        flat_params(tmp_path / "stream"), flat_params(tmp_path / "memory"), rtol=1e-4, atol=1e-5
    )
    found = inspect_files(str(files / "train"), None, "y", [])
    share_bytes = ROWS // 2 * found.row_bytes
    block = block_rows_for(MAX_IN_MEMORY, found.row_bytes)
    bound = stream_buffer_rows(job(files, "sync", True).data, 1000, block) * found.row_bytes
    assert bound < share_bytes / 4  # the bound is far below what the worker would hold

    def growth(w):  # the worker's peak resident memory above where it began
        return w["peak_rss_bytes"] - w["start_rss_bytes"]

    # What a worker holds besides its data (transport buffers, model, batch tensors): an
    # in-memory worker's growth less its share, which it copies whole.
    own = min(growth(w) for w in memory.workers) - share_bytes
    assert own > 0  # the measurement sees the share held in memory
    for w in streamed.workers:
        assert w["rows_read"] == ROWS // 2
        assert growth(w) - own < bound + SLACK


def test_a_streamed_async_job_reaches_the_accuracy_of_the_data_in_memory(
    ray_runtime, files, tmp_path
):
    streamed = run_job(job(files, "async", True, shuffle_buffer=5000), tmp_path / "stream")
    memory = run_job(job(files, "async", False), tmp_path / "memory")
    assert streamed.steps == streamed.total_steps == memory.steps
    assert streamed.samples == ROWS
    ledger = [json.loads(line) for line in (tmp_path / "stream" / "ledger.jsonl").open()]
    positions = sorted(entry["position"] for entry in ledger)
    assert positions == list(range(FILES * 4))  # each row group handed out once
    assert {entry["worker"] for entry in ledger} == {0, 1}
    assert abs(streamed.val_accuracy - memory.val_accuracy) < 0.02
    assert streamed.val_accuracy > 0.8
