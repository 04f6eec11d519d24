"""The training split's figures come from a fixed, bounded sample (training.eval_train_rows)."""

from __future__ import annotations

import numpy as np
import pytest

from ps.errors import SpecError
from ps.jobs.evaluator import _sample
from ps.spec import parse_spec
from tests.runtime.helpers import spec


def test_the_sample_is_bounded_fixed_by_the_seed_and_in_split_order():
    rows = _sample(100_000, 2048, seed=0)
    assert len(rows) == len(np.unique(rows)) == 2048 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, _sample(100_000, 2048, seed=0))  # every evaluation
    assert not np.array_equal(rows, _sample(100_000, 2048, seed=1))
    assert rows.max() > 50_000  # spread over the split, not a prefix
    assert _sample(1_000, 2048, seed=0) == slice(None)  # a small split: every row


def test_eval_train_rows_defaults_to_2048_and_is_checked():
    assert parse_spec(spec()).training.eval_train_rows == 2048
    with pytest.raises(SpecError, match="training.eval_train_rows"):
        parse_spec(spec(training={"eval_train_rows": 0}))
