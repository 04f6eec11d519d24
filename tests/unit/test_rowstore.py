"""The compiled row store against the numpy reference: the same rows, state and counts after
any stream of updates, reads and restores, for every per-row rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ps.optim.rows import build_row_rule
from ps.protocol.messages import TableConfig
from ps.server.rowstores import NativeRows, NumpyRows, native_available
from ps.server.sparse import SparseTable

RULES = {
    "sgd": {"name": "sgd", "lr": 0.1, "l2": 0.01},
    "adagrad": {"name": "adagrad", "lr": 0.05, "l2": 0.001, "initial_accumulator_value": 0.1},
    "adam": {"name": "adam", "lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
    "adam-low-beta": {"name": "adam", "lr": 0.01, "betas": (0.3, 0.9)},
    "ftrl": {"name": "ftrl", "lr": 0.5, "l1": 0.05, "l2": 0.1, "beta": 1.0},
}
WIDTH = 5
TABLE = TableConfig(table=0, name="t", num_rows=10**12, width=WIDTH, init="normal", scale=0.1)
# torch's kernels may fuse a multiply and an add where the compiled loop rounds each: the stores
# agree to float32 rounding, compounded over the updates a row gets here.
RTOL, ATOL = 2e-5, 1e-6

# One operation: ("apply", key pool size, seed), ("read", …) or ("restore", …, …).
operations = st.lists(
    st.tuples(
        st.sampled_from(["apply", "apply", "apply", "read", "restore"]),
        st.integers(1, 300),
        st.integers(0, 2**31 - 1),
    ),
    min_size=1,
    max_size=12,
)


def test_the_compiled_store_is_built():
    """``pip install -e .`` builds it: a missing build must fail here, not fall back quietly."""
    assert native_available()


def zeros(keys: np.ndarray) -> np.ndarray:
    return np.zeros((len(keys), WIDTH), np.float32)


def _keys(rng: np.random.Generator, pool: int) -> np.ndarray:
    # Distinct keys from a small pool (repeats across steps) and a few far ones (new rows).
    near = rng.choice(pool, size=rng.integers(1, pool + 1), replace=False)
    far = rng.integers(0, 10**12, size=rng.integers(0, 4))
    return np.unique(np.concatenate([near, far])).astype(np.int64)


def _assert_same(native: SparseTable, ref: SparseTable) -> None:
    got, want = native.state_dict(), ref.state_dict()
    np.testing.assert_array_equal(got["keys"], want["keys"])
    np.testing.assert_array_equal(got["steps"], want["steps"])
    np.testing.assert_allclose(got["values"], want["values"], rtol=RTOL, atol=ATOL)
    assert set(got["state"]) == set(want["state"])
    for name in want["state"]:
        np.testing.assert_allclose(got["state"][name], want["state"][name], rtol=RTOL, atol=ATOL)
    assert len(native) == len(ref)


@pytest.mark.parametrize("rule", list(RULES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_compiled_rows_equal_the_numpy_reference(rule, ops):
    row_rule = build_row_rule(RULES[rule])
    native = SparseTable(TABLE, row_rule, seed=3, rows=NativeRows(WIDTH, row_rule))
    ref = SparseTable(TABLE, row_rule, seed=3, rows=NumpyRows(WIDTH, row_rule))
    for op, pool, seed in ops:
        rng = np.random.default_rng(seed)
        keys = _keys(rng, pool)
        if op == "apply":
            grads = rng.normal(size=(len(keys), WIDTH)).astype(np.float32)
            native.apply(keys, grads)
            ref.apply(keys, grads)
        elif op == "read":
            for missing in ("init", "zeros"):
                np.testing.assert_allclose(
                    native.lookup(keys, missing), ref.lookup(keys, missing), rtol=RTOL, atol=ATOL
                )
        else:  # a restore: both continue from the reference's checkpoint
            saved = ref.state_dict()
            native.load_state_dict(saved)
            ref.load_state_dict(saved)
        _assert_same(native, ref)
    for got, want in zip(native.items(), ref.items(), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_a_row_stays_found_while_the_index_grows_many_times():
    rule = build_row_rule(RULES["sgd"])
    rows = NativeRows(WIDTH, rule)
    keys = np.random.default_rng(0).permutation(200_000).astype(np.int64) * 7919
    for chunk in np.array_split(keys, 20):
        rows.apply(np.sort(chunk), np.ones((len(chunk), WIDTH), np.float32), zeros)
    _, have = rows.lookup(keys)
    assert have.all() and len(rows) == len(keys)
    _, have = rows.lookup(keys + 1)  # neighbours never seen: absent (7919 is prime, > 1)
    assert not have.any()


def test_broken_arguments_are_refused_without_a_change():
    rule = build_row_rule(RULES["adagrad"])
    rows = NativeRows(WIDTH, rule)
    rows.apply(np.arange(3, dtype=np.int64), np.ones((3, WIDTH), np.float32), zeros)
    before = rows.export()
    with pytest.raises(ValueError, match="rows must be"):
        rows.store.update(np.arange(3, dtype=np.int64), np.ones((3, WIDTH + 1), np.float32))
    with pytest.raises(IndexError, match="no row at slot"):
        rows.store.update(np.array([0, 7], np.int64), np.ones((2, WIDTH), np.float32))
    for got, want in zip(rows.export()[:2], before[:2], strict=True):
        np.testing.assert_array_equal(got, want)
