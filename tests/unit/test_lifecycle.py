"""A table's row lifecycle (admission, a row budget with LRU / LFU eviction, expiry) against a
small Python model of the semantics in ps/server/lifecycle.py, and restores after drops."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ps.errors import SpecError
from ps.jobs.admission import table_memory
from ps.optim.rows import build_row_rule
from ps.protocol.messages import TableConfig
from ps.server.lifecycle import EVICT_TO
from ps.server.rowstores import NativeRows, NumpyRows
from ps.server.sparse import SparseTable
from ps.spec import parse_spec
from workers.data.base import DataInfo
from workers.layers import Input

WIDTH, LR = 3, 0.5
RULE = build_row_rule({"name": "sgd", "lr": LR})


class ModelTable:
    """The semantics, one id at a time: a dict in insertion order (a dropped id that returns is
    a new row, last in order, like a new slot)."""

    def __init__(self, config: TableConfig, seed: int) -> None:
        self.config, self.seed = config, seed
        self.rows: dict[int, np.ndarray] = {}
        self.updates: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.seen: dict[int, int] = {}
        self.clock = 0
        self.counts = {"rows_admitted": 0, "rows_evicted": 0, "rows_expired": 0}

    def apply(self, keys: np.ndarray, grads: np.ndarray) -> None:
        c = self.config
        self.clock += 1
        for key, grad in zip(keys.tolist(), grads, strict=True):
            if key not in self.rows:
                self.seen[key] = self.seen.get(key, 0) + 1
                if self.seen[key] < c.admit_after:
                    continue
                self.rows[key] = c.initial(self.seed, np.array([key]))[0]
                self.updates[key] = 0
                self.counts["rows_admitted"] += 1
            self.rows[key] = self.rows[key] + np.float32(-LR) * grad
            self.updates[key] += 1
            self.last[key] = self.clock
        if c.expire_after_steps and self.clock % math.ceil(c.expire_after_steps / 8) == 0:
            for key in [k for k in self.rows if self.clock - self.last[k] > c.expire_after_steps]:
                self._drop(key, "rows_expired")
        if c.max_rows and len(self.rows) > c.max_rows:
            keep = int(c.max_rows * EVICT_TO) if c.max_rows > 1 else 1
            if c.evict == "lfu":
                order = sorted(self.rows, key=lambda k: (self.updates[k], self.last[k]))
            else:
                order = sorted(self.rows, key=lambda k: self.last[k])
            for key in order[: len(self.rows) - keep]:
                self._drop(key, "rows_evicted")

    def _drop(self, key: int, why: str) -> None:
        del self.rows[key], self.updates[key], self.last[key]
        self.counts[why] += 1


lifecycles = st.fixed_dictionaries(
    {
        "admit_after": st.integers(1, 3),
        "max_rows": st.one_of(st.none(), st.integers(20, 60)),
        "evict": st.sampled_from(["lru", "lfu"]),
        "expire_after_steps": st.one_of(st.none(), st.integers(1, 12)),
    }
)


def _table(config: TableConfig, store=NativeRows) -> SparseTable:
    return SparseTable(config, RULE, seed=5, rows=store(WIDTH, RULE))


def _stream(seed: int, updates: int):
    rng = np.random.default_rng(seed)
    for _ in range(updates):
        # Zipf-like: a few hot ids, many ids seen once or twice, ever-new ids.
        keys = np.unique(np.concatenate([rng.zipf(1.5, 12) % 200, rng.integers(200, 10**6, 3)]))
        yield keys.astype(np.int64), rng.normal(size=(len(keys), WIDTH)).astype(np.float32)


@pytest.mark.parametrize("store", [NativeRows, NumpyRows], ids=["compiled", "numpy"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(life=lifecycles, seed=st.integers(0, 2**16))
def test_the_lifecycle_matches_a_model_of_its_semantics(store, life, seed):
    config = TableConfig(0, "t", 10**6, WIDTH, **life)
    table, model = _table(config, store), ModelTable(config, seed=5)
    for keys, grads in _stream(seed, 40):
        table.apply(keys, grads)
        model.apply(keys, grads)
        got_keys, got_rows = table.items()
        want_keys = np.array(sorted(model.rows), dtype=np.int64)
        np.testing.assert_array_equal(got_keys, want_keys)
        want_rows = np.array([model.rows[k] for k in want_keys.tolist()]).reshape(-1, WIDTH)
        np.testing.assert_allclose(got_rows, want_rows, rtol=1e-5, atol=1e-6)
        assert table.life.counts == model.counts
        if life["max_rows"]:
            assert len(table) <= life["max_rows"]


def test_an_id_below_admission_reads_as_its_initial_value_and_its_gradient_is_dropped():
    config = TableConfig(0, "t", 10**6, WIDTH, admit_after=3)
    table, key = _table(config), np.array([42], np.int64)
    initial = table.lookup(key)
    for _ in range(2):
        table.apply(key, np.ones((1, WIDTH), np.float32))
        np.testing.assert_array_equal(table.lookup(key), initial)
        assert len(table) == 0
    table.apply(key, np.ones((1, WIDTH), np.float32))  # the third sighting: a row, updated
    np.testing.assert_allclose(table.lookup(key), initial - LR, rtol=1e-6)


@pytest.mark.parametrize("evict", ["lru", "lfu"])
def test_a_restore_after_drops_reproduces_the_fault_free_rows(evict):
    config = TableConfig(
        0, "t", 10**6, WIDTH, admit_after=2, max_rows=25, evict=evict, expire_after_steps=10
    )
    fault_free, stream = _table(config), list(_stream(7, 60))
    saved = None
    for i, (keys, grads) in enumerate(stream):
        fault_free.apply(keys, grads)
        if i == 29:  # through the checkpoint's own format (torch.load, weights only)
            buffer = io.BytesIO()
            torch.save(fault_free.state_dict(), buffer)
            buffer.seek(0)
            saved = torch.load(buffer, weights_only=True)
    assert fault_free.life.counts["rows_evicted"] and fault_free.life.counts["rows_expired"]
    restored = _table(config)
    restored.load_state_dict(saved)
    for keys, grads in stream[30:]:
        restored.apply(keys, grads)
    want, got = fault_free.state_dict(), restored.state_dict()
    for name in ("keys", "values", "steps"):
        np.testing.assert_array_equal(got[name], want[name])
    np.testing.assert_array_equal(got["lifecycle"]["last"], want["lifecycle"]["last"])
    assert got["lifecycle"]["counts"] == want["lifecycle"]["counts"]


def test_a_checkpoint_from_before_lifecycles_loads():
    config = TableConfig(0, "t", 10**6, WIDTH, expire_after_steps=4)
    old = _table(config)
    old.apply(np.arange(5, dtype=np.int64), np.ones((5, WIDTH), np.float32))
    saved = old.state_dict()
    del saved["lifecycle"]
    table = _table(config)
    table.load_state_dict(saved)
    assert len(table) == 5


NO_DATA = DataInfo(rows=None, inputs=Input((0,)), outputs=1)


def _ctr_spec(**embedding) -> dict:
    return {
        "data": {"source": "synthetic-ctr", "n_samples": 2000, "n_fields": 8},
        "model": {"type": "fm", "embedding": {"dim": 8, **embedding}, "loss": "bce"},
        "training": {"workers": 2, "batch_size": 64},
    }


@pytest.mark.parametrize(
    ("embedding", "key", "words"),
    [
        ({"max_rows": 1000}, "model.embedding.max_rows", "raise it to at least 1,024"),
        ({"admit_after": 0}, "model.embedding.admit_after", "greater than or equal to 1"),
        ({"evict": "fifo"}, "model.embedding.evict", "lru"),
        ({"expire_after_steps": 0}, "model.embedding.expire_after_steps", "greater than"),
    ],
)
def test_impossible_lifecycles_are_refused_with_the_key_path(embedding, key, words):
    with pytest.raises(SpecError) as err:
        spec = parse_spec(_ctr_spec(**embedding))
        table_memory(spec, NO_DATA)
    assert err.value.path == key and words in str(err.value)


def test_a_row_budget_beyond_the_table_memory_bound_is_refused_with_the_estimate():
    spec = parse_spec(
        {**_ctr_spec(max_rows=10**9, buckets=2**36), "ps": {"max_table_bytes": 2**30}}
    )
    with pytest.raises(SpecError, match=r"1,000,000,000 rows × \d+ bytes") as err:
        table_memory(spec, NO_DATA)
    assert err.value.path == "model.embedding.max_rows"
