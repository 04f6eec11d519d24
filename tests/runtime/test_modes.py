"""Digits trains to >= 0.95 test accuracy in every consistency mode, with staleness in bounds."""

from __future__ import annotations

import json

import pytest

from tests.runtime.helpers import run, spec

MODES = {
    "sync": {"mode": "sync"},
    "async": {"mode": "async"},
    "ssp": {"mode": "ssp", "staleness": 1},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_digits_reaches_095_and_staleness_is_bounded(ray_runtime, tmp_path, mode):
    events: list = []
    result = run(
        spec(
            optimizer={"name": "adam", "lr": 0.005},
            training={**MODES[mode], "workers": 2, "batch_size": 32, "epochs": 12},
        ),
        tmp_path,
        events,
    )
    assert result.test_accuracy >= 0.95, result
    # Gradients in flight when training ended are not rejections (non-finite, duplicate).
    assert result.rejected_gradients == {}, result.rejected_gradients
    staleness = {int(k): n for k, n in result.staleness.items()}
    assert sum(staleness.values()) == 2 * result.workers[0]["clock"]  # every gradient recorded
    if mode == "sync":
        assert set(staleness) == {0}
    elif mode == "ssp":
        assert max(staleness) <= 1
    # The run directory is complete and the history has one evaluation per epoch.
    for name in ("model.pt", "spec.yaml", "result.json", "metrics.jsonl", "curves.png"):
        assert (tmp_path / name).is_file()
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evaluations = [e for e in history if e["type"] == "evaluation"]
    assert [e["epoch"] for e in evaluations] == pytest.approx([float(i) for i in range(1, 13)])
    assert evaluations[-1]["val_accuracy"] > evaluations[0]["val_accuracy"]
    assert any(e.kind == "succeeded" for e in events)


@pytest.mark.parametrize(
    "compression",
    [{"compression": "fp16"}, {"compression": "bf16"}, {"compression": "topk", "topk_ratio": 0.1}],
    ids=["fp16", "bf16", "topk"],
)
def test_digits_reaches_095_with_gradient_compression(ray_runtime, tmp_path, compression):
    result = run(
        spec(
            optimizer={"name": "adam", "lr": 0.005},
            training={"workers": 2, "batch_size": 32, "epochs": 12, **compression},
        ),
        tmp_path,
    )
    assert result.test_accuracy >= 0.95, result.test_accuracy
    pushed = sum(s["bytes_pushed"] for s in result.shards)
    dense = 2 * result.steps * result.n_params * 4
    expected = {"fp16": 0.5, "bf16": 0.5, "topk": 0.2}[
        compression["compression"]
    ]  # topk: index + value
    assert pushed == pytest.approx(dense * expected, rel=0.01)
