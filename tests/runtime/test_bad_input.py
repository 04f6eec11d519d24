"""Invalid specs fail with the field path before any actor starts."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from ps.errors import SpecError
from ps.jobs.runner import ResourceError, run_job
from ps.spec import parse_spec
from tests.runtime.helpers import spec

BAD_SPECS = {
    "unknown top-level key": ({"bogus": 1}, "bogus", "unknown field"),
    "unknown nested key": ({"training": {"workerz": 2}}, "training.workerz", "unknown field"),
    "unknown optimizer key": (
        {"optimizer": {"name": "adam", "betas2": 0.9}},
        "optimizer.betas2",
        "unknown field",
    ),
    "bad choice": ({"training": {"mode": "bsp"}}, "training.mode", "'sync', 'async' or 'ssp'"),
    "out of range": (
        {"training": {"workers": 0}},
        "training.workers",
        "greater than or equal to 1",
    ),
    "wrong type": ({"training": {"batch_size": "many"}}, "training.batch_size", "valid integer"),
    "bad hyperparameter": (
        {"optimizer": {"name": "adam", "lr": -1}},
        "optimizer.lr",
        "must be > 0",
    ),
    "bad layer": (
        {"model": {"layers": [{"type": "dense", "units": 10, "activation": "swish"}]}},
        "model.layers.0.activation.type",
        "'relu'",
    ),
    "unknown layer type": (
        {"model": {"layers": [{"type": "conv3d"}]}},
        "model.layers.0.type",
        "'dense'",
    ),
    "bad source": ({"data": {"source": "x.h5"}}, "data.source", "unknown source 'x.h5'"),
    "splits": (
        {"data": {"validation_split": 0.6, "test_split": 0.5}},
        "data.test_split",
        "must be < 1",
    ),
    "l1 mode": ({"regularization": {"l1_mode": "lasso"}}, "regularization.l1_mode", "unknown mode"),
}
DATA_ERRORS = {
    "no such source": (
        {"data": {"source": "mnist"}},
        "data.source",
        "mnist': not a bundled source",
    ),
    "missing file": ({"data": {"source": "/nonexistent/x.npz"}}, "data.source", "file not found"),
    "wrong output units": (
        {"model": {"layers": [{"type": "dense", "units": 7}]}},
        "model.layers.0.units",
        "must be 10",
    ),
}


def _actor_names() -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_invalid_field_names_its_path(case):
    overrides, path, text = BAD_SPECS[case]
    with pytest.raises(SpecError) as info:
        parse_spec(spec(**overrides))
    assert info.value.path == path
    assert text in str(info.value)


@pytest.mark.parametrize("case", list(DATA_ERRORS))
def test_data_dependent_errors_start_no_actor(ray_runtime, tmp_path, case):
    overrides, path, text = DATA_ERRORS[case]
    before = _actor_names()
    with pytest.raises(SpecError) as info:
        run_job(parse_spec(spec(**overrides)), tmp_path)
    assert info.value.path == path and text in str(info.value)
    assert _actor_names() == before
    assert not (tmp_path / "spec.yaml").exists()


def test_npz_without_arrays_and_csv_without_target_column(ray_runtime, tmp_path):
    np.savez(tmp_path / "bad.npz", features=np.zeros((5, 2)))
    with pytest.raises(SpecError, match=r"lacks array\(s\) \['X', 'y'\]"):
        run_job(parse_spec(spec(data={"source": str(tmp_path / "bad.npz")})), tmp_path / "out")
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    with pytest.raises(SpecError, match="column 'target' not in d.csv"):
        run_job(
            parse_spec(spec(data={"source": str(tmp_path / "d.csv"), "target": "target"})),
            tmp_path / "o",
        )


def test_a_job_larger_than_the_cluster_is_refused_before_it_starts(ray_runtime, tmp_path):
    before = _actor_names()
    with pytest.raises(ResourceError, match="needs 64 CPU"):
        run_job(parse_spec(spec(training={"workers": 64})), tmp_path)
    assert _actor_names() == before
