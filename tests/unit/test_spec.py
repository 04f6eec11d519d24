"""The job spec: defaults, round trips, and errors with their key paths."""

from __future__ import annotations

import pytest

from ps.errors import SpecError
from ps.spec import load_spec, parse_spec

MINIMAL = {"model": {"layers": [{"type": "dense", "units": 10}]}}


def test_defaults_are_filled_in():
    s = parse_spec(MINIMAL)
    assert s.data.source == "digits" and s.training.mode == "sync" and s.ps.shards == 1
    assert s.optimizer.to_dict() == {
        "name": "adam",
        "lr": 0.001,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "amsgrad": False,
        "schedule": {"type": "constant"},
        "clip_grad_norm": None,
    }
    assert s.regularization.to_dict() == {"l2": 0.0, "l1": 0.0, "l1_mode": "subgradient"}
    assert s.model.layers[0].activation.type == "linear"
    assert s.model.layers[0].init.type == "glorot_uniform"


def test_round_trip_through_plain_data_and_yaml(tmp_path):
    s = parse_spec(
        {
            **MINIMAL,
            "optimizer": {"name": "nag", "schedule": {"type": "cosine"}},
            "training": {"early_stopping": {"patience": 2}},
        }
    )
    assert parse_spec(s.to_dict()) == s
    (tmp_path / "s.yaml").write_text(s.to_yaml())
    assert load_spec(tmp_path / "s.yaml") == s
    assert s.optimizer.schedule == {"type": "cosine", "t_max": None, "min_lr": 0.0}


def test_every_example_is_valid():
    from pathlib import Path

    examples = sorted(Path("examples").glob("*.yaml"))
    assert len(examples) >= 6
    for path in examples:
        load_spec(path)


@pytest.mark.parametrize(
    ("spec", "path", "text"),
    [
        (
            {**MINIMAL, "training": {"early_stopping": {}}, "data": {"validation_split": 0}},
            "training.early_stopping.monitor",
            "needs data.validation_split > 0",
        ),
        (
            {
                "model": {"layers": [{"type": "dense", "units": 1}], "loss": "mse"},
                "training": {"early_stopping": {"monitor": "val_accuracy"}},
            },
            "training.early_stopping.monitor",
            "undefined for loss 'mse'",
        ),
        ({"model": {"layers": []}}, "model.layers", "at least 1 item"),
        (
            {"model": {"layers": [{"type": "dense"}]}},
            "model.layers.0.units",
            "required field is missing",
        ),
        ({**MINIMAL, "data": {"source": "x.csv"}}, "data.target", "required for a .csv source"),
        ({**MINIMAL, "seed": -1}, "seed", "greater than or equal to 0"),
        ({**MINIMAL, "optimizer": "adam"}, "optimizer", "must be a mapping"),
    ],
)
def test_errors_name_their_path(spec, path, text):
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    assert info.value.path == path, str(info.value)
    assert text in str(info.value)


def test_several_problems_are_all_reported():
    with pytest.raises(SpecError) as info:
        parse_spec({**MINIMAL, "seed": -1, "training": {"workers": 0}})
    assert len(info.value.others) == 1


def test_every_kind_of_problem_is_reported_at_once_with_a_did_you_mean():
    bad = {
        **MINIMAL,
        "optimzer": {},
        "optimizer": {"name": "adam", "lr": "fast", "betas2": 0.9},
        "training": {"wokers": 2, "batch_size": 0},
        "model": {"layers": [{"type": "dense", "unit": 3}]},
    }
    with pytest.raises(SpecError) as info:
        parse_spec(bad)
    reported = [str(info.value), *info.value.others]
    for expected in (
        "optimizer.lr: invalid value 'fast' (must be a number)",
        "optimizer.betas2: unknown field for optimizer 'adam' (did you mean 'betas'?)",
        "optimzer: unknown field (did you mean 'optimizer'?)",
        "training.wokers: unknown field (did you mean 'workers'?)",
        "training.batch_size:",
        "model.layers.0.unit: unknown field (did you mean 'units'?)",
    ):
        assert any(line.startswith(expected) for line in reported), (expected, reported)


def test_unreadable_and_unparsable_files(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")


def test_an_error_in_any_layer_names_its_key_path_without_the_layer_tag():
    for layer, key in (
        ({"type": "conv2d", "filters": 0, "kernel_size": 3}, "filters"),
        ({"type": "lstm", "units": 0}, "units"),
        ({"type": "dense", "units": 0}, "units"),
    ):
        with pytest.raises(SpecError) as err:
            parse_spec({"model": {"layers": [{"type": "flatten"}, layer]}})
        assert err.value.path == f"model.layers.1.{key}"
