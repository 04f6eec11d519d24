"""The examples do what their comments promise."""

from __future__ import annotations

from pathlib import Path

import yaml

from ps.jobs.runner import run_job
from ps.spec import load_spec, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_digits_cnn_reaches_098(ray_runtime, tmp_path):
    result = run_job(load_spec(EXAMPLES / "digits-cnn.yaml"), tmp_path)
    assert result.test_accuracy >= 0.98, result.test_accuracy
    assert result.steps == result.total_steps and (tmp_path / "model.pt2").is_file()


def test_an_lstm_learns_the_adding_problem_a_dense_network_cannot(ray_runtime, tmp_path):
    """The sequence examples, smaller (40 steps, 2,500 samples, 20 epochs)."""
    losses = {}
    for name in ("sequence-lstm", "sequence-dense"):
        data = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
        data["data"].update(n_samples=2500, sequence_length=40)
        data["training"]["epochs"] = 20
        losses[name] = run_job(parse_spec(data), tmp_path / name).test_loss
    # The target's variance is 1/6: the dense network stays near it; the LSTM far below.
    assert losses["sequence-dense"] > 0.1
    assert losses["sequence-lstm"] < losses["sequence-dense"] / 10, losses


def test_the_ctr_example_beats_logistic_regression_on_the_same_ids(ray_runtime, tmp_path):
    """The example on 80,000 samples (its 200,000 give DeepFM ≈ 0.747, logistic ≈ 0.715)."""
    data = yaml.safe_load((EXAMPLES / "ctr-deepfm.yaml").read_text())
    data["data"]["n_samples"] = 80_000
    deepfm = run_job(parse_spec(data), tmp_path / "deepfm")
    data["model"] = {"type": "logistic", "loss": "bce"}
    logistic = run_job(parse_spec(data), tmp_path / "logistic")
    assert deepfm.steps == deepfm.total_steps and deepfm.test_auc > 0.72, deepfm.test_auc
    assert deepfm.test_auc > logistic.test_auc + 0.01, (deepfm.test_auc, logistic.test_auc)


def clicks_spec(source) -> dict:
    """examples/ctr-stream.yaml reading ``source`` (fewer rows: 1 epoch of 80,000)."""
    data = yaml.safe_load((EXAMPLES / "ctr-stream.yaml").read_text())
    data["data"]["source"] = str(source)
    data["training"]["epochs"] = 1
    return data


def test_the_streaming_ctr_example_learns_the_click_log_as_in_memory(ray_runtime, tmp_path):
    from examples.make_clicks import write_clicks

    write_clicks(tmp_path / "clicks", rows=80_000, files=4)
    streamed = run_job(parse_spec(clicks_spec(tmp_path / "clicks" / "*.parquet")), tmp_path / "s")
    assert streamed.steps == streamed.total_steps and streamed.test_auc > 0.72, streamed.test_auc
    assert all(w["rows_read"] > 0 for w in streamed.workers)
