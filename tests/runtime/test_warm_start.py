"""init_from: a job starts from an exported model's weights."""

from __future__ import annotations

import pytest
import torch

from ps.errors import SpecError
from tests.runtime.helpers import flat_params, run, spec


def test_warm_start_continues_from_an_exported_model(ray_runtime, tmp_path):
    first = run(spec(training={"epochs": 3}), tmp_path / "first")
    again = run(
        spec(model={"init_from": str(tmp_path / "first" / "model.pt")}, training={"max_steps": 0}),
        tmp_path / "again",
    )
    assert again.steps == 0
    torch.testing.assert_close(flat_params(tmp_path / "again"), flat_params(tmp_path / "first"))
    assert again.test_accuracy == pytest.approx(first.test_accuracy)


def test_warm_start_from_a_different_architecture_names_the_field(ray_runtime, tmp_path):
    run(spec(training={"max_steps": 0}), tmp_path / "small")
    wider = spec(
        model={
            "layers": [{"type": "dense", "units": 48}, {"type": "dense", "units": 10}],
            "init_from": str(tmp_path / "small" / "model.pt"),
        }
    )
    with pytest.raises(SpecError, match=r"^model.init_from: cannot warm-start"):
        run(wider, tmp_path / "bad")
