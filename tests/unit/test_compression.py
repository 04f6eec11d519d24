"""Gradient compression round trips and top-k error feedback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ps.protocol.compression import Compressor, decompress_into, payload_nbytes, payload_shape


@pytest.mark.parametrize(
    ("kind", "rtol", "ratio"), [("none", 0, 1.0), ("fp16", 1e-3, 0.5), ("bf16", 1e-2, 0.5)]
)
def test_dense_round_trip(kind, rtol, ratio):
    g = torch.randn(1000)
    payload = Compressor(kind, 1000).compress(g)
    assert payload_shape(payload) == (1000,)
    assert payload_nbytes(payload) == int(4000 * ratio)
    out = decompress_into(payload, np.empty(1000, np.float32))
    np.testing.assert_allclose(out, g.numpy(), rtol=rtol, atol=1e-6)


def test_topk_sends_the_largest_and_feeds_the_rest_back():
    comp = Compressor("topk", 10, topk_ratio=0.2)  # k = 2
    g = torch.tensor([0.1, -5.0, 0.2, 0.0, 3.0, 0.1, 0.1, 0.1, 0.1, 0.1])
    first = decompress_into(comp.compress(g), np.empty(10, np.float32))
    np.testing.assert_array_equal(np.nonzero(first)[0], [1, 4])
    np.testing.assert_allclose(first[[1, 4]], [-5.0, 3.0])
    # Error feedback: what was not sent accumulates until it is large enough to be sent.
    second = decompress_into(comp.compress(torch.zeros(10)), np.empty(10, np.float32))
    assert np.count_nonzero(second) == 2 and set(np.nonzero(second)[0]) <= {0, 2, 5, 6, 7, 8, 9}
    total_sent = first.copy()
    total_sent += second
    for _ in range(10):
        total_sent += decompress_into(comp.compress(torch.zeros(10)), np.empty(10, np.float32))
    np.testing.assert_allclose(total_sent, g.numpy(), atol=1e-6)  # nothing lost, only delayed
    assert payload_nbytes(comp.compress(torch.zeros(10))) == 2 * 4 + 2 * 4


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown compression"):
        Compressor("zip", 10)
