"""Sparse embedding tables on the shards: the key index, the lazy per-row rules against
``torch.optim`` and a plain FTRL implementation, sync steps against a dense table, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ps.errors import SpecError
from ps.hashing import hash_column, initial_rows, shard_of
from ps.optim.rows import build_row_rule, resolve_sparse_optimizer
from ps.protocol.messages import Push, TableConfig
from ps.protocol.rows import sum_duplicates
from ps.server.config import ShardConfig
from ps.server.rowstores import KeyIndex
from ps.server.shard import ShardCore
from ps.server.sparse import SparseTable
from ps.server.tables import TablesConfig

WIDTH = 3
TABLE = TableConfig(0, "embedding", 1000, WIDTH, "normal", 0.1)


def test_the_key_index_finds_what_it_added_across_growth():
    index, rng = KeyIndex(), np.random.default_rng(0)
    keys = rng.choice(2**62, 5000, replace=False).astype(np.int64)
    for part in np.array_split(keys, 7):
        index.add(part)
    np.testing.assert_array_equal(index.find(keys), np.arange(5000))
    assert (index.find(np.array([-5, 2**62 + 1], np.int64)) == -1).all()


def test_rows_exist_only_once_touched_and_start_as_the_initializer_says():
    table = SparseTable(TABLE, build_row_rule({"name": "sgd", "lr": 1.0}), seed=7)
    keys = np.array([3, 999, 42], np.int64)
    initial = table.lookup(keys)
    assert len(table) == 0  # a read creates nothing
    np.testing.assert_array_equal(initial, initial_rows(7, 0, keys, WIDTH, "normal", 0.1))
    np.testing.assert_array_equal(table.lookup(keys, "zeros"), 0)
    table.apply(keys[:2], np.ones((2, WIDTH), np.float32))
    assert len(table) == 2
    np.testing.assert_allclose(table.lookup(keys[:2]), initial[:2] - 1.0)
    np.testing.assert_array_equal(table.lookup(keys[2:]), initial[2:])  # untouched: unchanged


def test_duplicates_in_a_batch_are_summed_as_embedding_bag_sums():
    keys = np.array([5, 1, 5, 5], np.int64)
    grads = np.arange(12, dtype=np.float32).reshape(4, 3)
    distinct, summed = sum_duplicates(keys, grads, 3)
    np.testing.assert_array_equal(distinct, [1, 5])
    np.testing.assert_array_equal(summed, [grads[1], grads[0] + grads[2] + grads[3]])


def _torch_optimizer(config: dict, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    name, lr, l2 = config["name"], config["lr"], config.get("l2", 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=l2)
    if name == "adagrad":
        return torch.optim.Adagrad(
            params, lr=lr, eps=config["eps"], weight_decay=l2,
            initial_accumulator_value=config["initial_accumulator_value"],
        )  # fmt: skip
    return torch.optim.Adam(
        params, lr=lr, betas=config["betas"], eps=config["eps"], weight_decay=l2
    )


@pytest.mark.parametrize(
    "config",
    [
        {"name": "sgd", "lr": 0.1, "l2": 0.01},
        {"name": "adagrad", "lr": 0.1, "initial_accumulator_value": 0.1, "l2": 0.01},
        {"name": "adam", "lr": 0.05, "betas": (0.8, 0.9), "l2": 0.01},
    ],
    ids=lambda c: c["name"],
)
def test_lazy_rules_are_torch_optim_on_each_row_stepped_only_when_touched(config):
    """The documented semantics: each row is its own ``torch.optim`` problem whose step count
    and state advance only when a batch touches it (as ``torch.optim.SparseAdam`` does)."""
    config = resolve_sparse_optimizer(config).to_dict()
    table = SparseTable(TABLE, build_row_rule(config), seed=1)
    rng = np.random.default_rng(3)
    reference: dict[int, tuple[torch.Tensor, torch.optim.Optimizer]] = {}
    for _ in range(12):
        keys = np.sort(rng.choice(40, size=int(rng.integers(1, 15)), replace=False)).astype(
            np.int64
        )
        grads = rng.normal(size=(len(keys), WIDTH)).astype(np.float32)
        table.apply(keys, grads)
        for key, grad in zip(keys, grads, strict=True):
            if key not in reference:
                row = torch.tensor(table.config.initial(1, np.array([key]))[0], requires_grad=True)
                reference[key] = (row, _torch_optimizer(config, [row]))
            row, opt = reference[key]
            row.grad = torch.from_numpy(grad.copy())
            opt.step()
    keys = np.array(sorted(reference), np.int64)
    expected = torch.stack([reference[k][0].detach() for k in keys]).numpy()
    np.testing.assert_allclose(table.lookup(keys), expected, rtol=1e-5, atol=1e-6)
    assert len(table) == len(keys)


def _ftrl_reference(config: dict, w0: float, grads: list[float]) -> float:
    """McMahan et al. (2013), Algorithm 1, for one coordinate, in float64; ``w0`` enters
    through ``z`` at the first update, as documented."""
    alpha, beta, l1, l2 = config["lr"], config["beta"], config["l1"], config["l2"]
    z, n, w = 0.0, config["initial_accumulator_value"], w0
    for g in grads:
        sigma = (math.sqrt(n + g * g) - math.sqrt(n)) / alpha
        z += g - sigma * w
        n += g * g
        w = (
            0.0
            if abs(z) <= l1
            else -(z - math.copysign(l1, z)) / ((beta + math.sqrt(n)) / alpha + l2)
        )
    return w


def test_ftrl_is_mcmahan_algorithm_one_per_coordinate():
    config = resolve_sparse_optimizer({"name": "ftrl", "lr": 0.1, "l1": 0.05, "l2": 0.5}).to_dict()
    table = SparseTable(TABLE, build_row_rule(config), seed=2)
    key = np.array([17], np.int64)
    w0 = table.lookup(key)[0]
    rng = np.random.default_rng(4)
    history = rng.normal(size=(20, WIDTH))
    for g in history:
        table.apply(key, g[None].astype(np.float32))
    expected = [_ftrl_reference(config, float(w0[c]), list(history[:, c])) for c in range(WIDTH)]
    np.testing.assert_allclose(table.lookup(key)[0], expected, rtol=1e-4, atol=1e-6)


def test_ftrl_with_l1_leaves_the_rows_of_features_that_do_not_matter_exactly_zero():
    """Logistic regression over 200 ids of which 10 carry weight: with l1 most rows are 0."""
    rng = np.random.default_rng(0)
    truth = np.zeros(200)
    truth[:10] = rng.choice([-3.0, 3.0], 10)
    config = TableConfig(0, "w", 200, 1, "zeros", 0.0)

    def train(l1: float) -> np.ndarray:
        rule = build_row_rule(resolve_sparse_optimizer({"name": "ftrl", "lr": 0.2, "l1": l1}))
        table = SparseTable(config, rule, seed=0)
        for _ in range(300):
            ids = rng.integers(0, 200, size=(64, 3))
            p = 1 / (1 + np.exp(-truth[ids].sum(1)))
            y = (rng.random(64) < p).astype(np.float32)
            keys, inverse = np.unique(ids, return_inverse=True)
            w = table.lookup(keys)[:, 0]
            q = 1 / (1 + np.exp(-w[inverse.reshape(ids.shape)].sum(1)))
            g = np.zeros(len(keys), np.float32)
            np.add.at(g, inverse.reshape(ids.shape), ((q - y) / 64)[:, None])
            table.apply(keys, g[:, None])
        return table.lookup(np.arange(200, dtype=np.int64))[:, 0]

    sparse, dense = train(l1=1.0), train(l1=0.0)
    assert (sparse[10:] == 0).mean() > 0.9 and (dense[10:] == 0).mean() < 0.1
    assert (np.sign(sparse[:10]) == np.sign(truth[:10])).all()


def test_optimizers_without_a_lazy_per_row_form_are_refused_with_the_key():
    with pytest.raises(SpecError) as info:
        resolve_sparse_optimizer({"name": "adadelta"})
    assert info.value.path == "sparse_optimizer.name" and "per-row" in info.value.message
    with pytest.raises(SpecError) as info:
        resolve_sparse_optimizer({"name": "ftrl", "l1": float("nan")})
    assert info.value.path == "sparse_optimizer.l1"


def _shards(mode: str, shards: int, workers: int, optimizer: dict) -> list[ShardCore]:
    tables = TablesConfig((TABLE,), resolve_sparse_optimizer(optimizer), mode, 0, seed=5)
    out = []
    for i in range(shards):
        config = ShardConfig.make(
            i, {"name": "sgd", "lr": 0.1}, offset=i, size=1, mode=mode, workers=workers,
            shards=shards, tables=tables,
        )  # fmt: skip
        out.append(ShardCore(config, np.zeros(1, np.float32)))
    return out


def _split(keys: np.ndarray, grads: np.ndarray, shards: int):
    owner = shard_of(0, keys, shards)
    return [[(0, keys[owner == s], grads[owner == s])] for s in range(shards)]


def test_sync_rows_on_two_shards_from_two_workers_equal_a_dense_table_average():
    """Each step both workers push the rows they touched; the shards apply the average (a row
    one worker did not touch counts as zero there) — ``torch.optim.Adagrad`` on a dense table
    with the averaged gradient, where untouched rows do not move."""
    optimizer = {"name": "adagrad", "lr": 0.3}
    cores = _shards("sync", 2, 2, optimizer)
    dense = torch.tensor(TABLE.initial(5, np.arange(60, dtype=np.int64)), requires_grad=True)
    reference = torch.optim.Adagrad([dense], lr=0.3)
    rng = np.random.default_rng(9)
    for step in range(1, 6):
        average = np.zeros((60, WIDTH), np.float32)
        for worker in range(2):
            keys = np.sort(rng.choice(40, size=12, replace=False)).astype(np.int64)
            grads = rng.normal(size=(12, WIDTH)).astype(np.float32)
            average[keys] += grads / 2
            for core, rows in zip(cores, _split(keys, grads, 2), strict=True):
                core.push(
                    Push(worker, step, step - 1, step - 1), np.zeros(1, np.float32), rows=rows
                )
        dense.grad = torch.from_numpy(average)
        reference.step()
    expected = dense.detach().numpy()
    for core in cores:
        keys, rows = core.final()["rows"][0]
        np.testing.assert_allclose(rows, expected[keys], rtol=1e-5, atol=1e-6)
    touched = np.concatenate([c.final()["rows"][0][0] for c in cores])
    assert len(set(touched)) == len(touched) and touched.max() < 40  # each row on one shard
    untouched = np.arange(40, 60, dtype=np.int64)
    read = cores[0].read(5, rows=[(0, untouched)]).rows[0]
    np.testing.assert_array_equal(read, TABLE.initial(5, untouched))  # never created, initial


def test_a_rejected_push_drops_its_rows_and_async_rows_apply_on_arrival():
    (sync,) = _shards("sync", 1, 2, {"name": "sgd", "lr": 1.0})
    keys = np.array([1, 2], np.int64)
    bad = np.array([[np.nan] * WIDTH, [1.0] * WIDTH], np.float32)
    assert sync.push(Push(0, 1, 0, 0), np.zeros(1, np.float32), rows=[(0, keys, bad)]) == (
        "rejected"
    )
    ones = np.ones((2, WIDTH), np.float32)
    sync.push(Push(1, 1, 0, 0), np.zeros(1, np.float32), rows=[(0, keys, ones)])
    np.testing.assert_allclose(sync.lookup_rows(1, 0, keys), TABLE.initial(5, keys) - 1.0)
    (asy,) = _shards("async", 1, 2, {"name": "sgd", "lr": 1.0})
    asy.push(Push(0, 1, 0, 0), np.zeros(1, np.float32), rows=[(0, keys, ones)])
    np.testing.assert_allclose(asy.lookup_rows(1, 0, keys), TABLE.initial(5, keys) - 1.0)
    with pytest.raises(ValueError, match="sorted and distinct"):
        asy.push(Push(0, 2, 0, 0), np.zeros(1, np.float32), rows=[(0, keys[::-1], ones)])


def test_tables_and_pending_gradients_survive_a_checkpoint():
    optimizer = {"name": "adam", "lr": 0.1}
    (core,) = _shards("sync", 1, 2, optimizer)
    rng = np.random.default_rng(1)
    keys = np.arange(0, 30, 3, dtype=np.int64)
    for step in (1, 2):
        for worker in range(2):
            grads = rng.normal(size=(len(keys), WIDTH)).astype(np.float32)
            core.push(Push(worker, step, 0, 0), np.zeros(1, np.float32), rows=[(0, keys, grads)])
    half = rng.normal(size=(len(keys), WIDTH)).astype(np.float32)
    core.push(Push(0, 3, 0, 0), np.zeros(1, np.float32), rows=[(0, keys, half)])  # mid-step
    saved = core.state_dict()
    (restored,) = _shards("sync", 1, 2, optimizer)
    restored.load_state_dict(saved)
    last = rng.normal(size=(len(keys), WIDTH)).astype(np.float32)
    for c in (core, restored):
        c.push(Push(1, 3, 0, 0), np.zeros(1, np.float32), rows=[(0, keys, last)])
    np.testing.assert_array_equal(core.final()["rows"][0][1], restored.final()["rows"][0][1])
    assert restored.stats().table_rows == len(keys)


def test_hashing_is_stable_per_column_and_gives_missing_values_their_own_id():
    import pyarrow as pa

    column = pa.array(["a", None, "b", "a", None])
    ids = hash_column("user", column, 1000)
    assert ids[0] == ids[3] and ids[1] == ids[4] and len(set(ids[:3])) == 3
    assert (hash_column("user", column, 1000) == ids).all()
    assert not (hash_column("item", column, 2**40) == hash_column("user", column, 2**40)).all()
    ints = hash_column("n", pa.array([1, 2, 1]), 2**20)
    assert ints[0] == ints[2] != ints[1] and ((ints >= 0) & (ints < 2**20)).all()
