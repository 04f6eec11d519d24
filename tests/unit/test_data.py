"""Data loading, splits, normalization from the training split only, and worker shards."""

from __future__ import annotations

import numpy as np
import pytest

from ps.errors import SpecError
from ps.jobs.paths import resolve_path
from ps.spec import DataSpec, parse_spec
from ps.spec.sources import BUNDLED_SOURCES, FILE_SUFFIXES, KINDS, SOURCES, find_source
from workers.data import LOADERS, batches_per_epoch, epoch_batches, load_dataset, worker_rows


def test_digits_split_sizes_and_standardization_uses_training_rows_only():
    d = load_dataset(DataSpec(source="digits"), "cross_entropy", seed=0)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (1258, 180, 359)
    assert d.inputs.shape == (64,) and d.n_outputs == 10
    np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-5)
    assert not np.allclose(d.x_test.mean(0), 0, atol=1e-3)  # test rows did not set the statistics


def test_seeded_shuffle_is_reproducible_and_no_shuffle_keeps_file_order(tmp_path):
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    np.savez(tmp_path / "d.npz", X=x, y=np.arange(20) % 2)
    spec = DataSpec(
        source=str(tmp_path / "d.npz"), normalize="none", test_split=0.25, validation_split=0.25
    )
    a = load_dataset(spec, "cross_entropy", seed=1)
    b = load_dataset(spec, "cross_entropy", seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    ordered = load_dataset(spec.model_copy(update={"shuffle": False}), "cross_entropy", seed=1)
    np.testing.assert_array_equal(ordered.x_train, x[:10])
    np.testing.assert_array_equal(ordered.x_test, x[15:])


def test_csv_and_parquet_with_a_target_column(tmp_path):
    rows = ["f1,label,f2"] + [f"{i},{'cat' if i % 2 else 'dog'},{i * 2}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows))
    d = load_dataset(
        DataSpec(
            source=str(tmp_path / "d.csv"),
            target="label",
            normalize="none",
            shuffle=False,
            test_split=0,
            validation_split=0,
        ),
        "cross_entropy",
        0,
    )
    assert d.classes == ["cat", "dog"]
    np.testing.assert_array_equal(d.x_train[3], [3, 6])
    assert d.y_train[3] == 0 and d.y_train[4] == 1

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"a": [1.0, 2.0, 3.0, 4.0], "y": [0.5, 1.5, 2.5, 3.5]}), tmp_path / "d.parquet"
    )
    r = load_dataset(
        DataSpec(
            source=str(tmp_path / "d.parquet"),
            target="y",
            normalize="none",
            shuffle=False,
            test_split=0,
            validation_split=0,
        ),
        "mse",
        0,
    )
    assert r.n_outputs == 1
    np.testing.assert_allclose(r.y_train[:, 0], [0.5, 1.5, 2.5, 3.5])


def test_minmax_and_synthetic_sources():
    d = load_dataset(
        DataSpec(
            source="synthetic-classification",
            n_samples=500,
            n_features=8,
            n_classes=3,
            normalize="minmax",
        ),
        "cross_entropy",
        0,
    )
    assert d.x_train.min() == pytest.approx(0) and d.x_train.max() == pytest.approx(1)
    assert d.n_outputs == 3
    r = load_dataset(DataSpec(source="synthetic-regression", n_samples=300, n_features=4), "mse", 0)
    assert r.y_train.shape[1] == 1 and r.inputs.shape == (4,)


def test_shards_are_disjoint_equal_and_cover_everything():
    bounds = worker_rows(1258, 3)
    assert bounds[0][0] == 0 and bounds[-1][1] == 1258
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1
    assert batches_per_epoch(1258, 3, 64) == 7  # ceil(420 / 64)


def test_each_epoch_visits_every_row_once_in_a_seeded_order():
    a = epoch_batches(100, 4, seed=0, worker=1, epoch=0, shuffle=True)
    assert sorted(np.concatenate(a).tolist()) == list(range(100))
    b = epoch_batches(100, 4, seed=0, worker=1, epoch=1, shuffle=True)
    assert not np.array_equal(np.concatenate(a), np.concatenate(b))
    c = epoch_batches(100, 4, seed=0, worker=1, epoch=0, shuffle=True)
    assert all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_data_root_refuses_escapes(tmp_path):
    (tmp_path / "inside.npz").write_bytes(b"")
    assert resolve_path("inside.npz", tmp_path) == (tmp_path / "inside.npz").resolve()
    with pytest.raises(SpecError, match="outside the data root"):
        resolve_path("../etc/passwd", tmp_path)


def test_targets_must_fit_the_loss(tmp_path):
    np.savez(tmp_path / "one.npz", X=np.zeros((10, 2)), y=np.zeros(10))
    with pytest.raises(SpecError, match="at least 2 classes"):
        load_dataset(DataSpec(source=str(tmp_path / "one.npz")), "cross_entropy", 0)
    np.savez(tmp_path / "three.npz", X=np.zeros((12, 2)), y=np.arange(12) % 3)
    with pytest.raises(SpecError, match="'bce' needs exactly 2 classes"):
        load_dataset(DataSpec(source=str(tmp_path / "three.npz")), "bce", 0)


def test_digits_as_images_are_normalized_per_channel():
    d = load_dataset(DataSpec(source="digits", layout="image"), "cross_entropy", seed=0)
    assert d.x_train.shape[1:] == (1, 8, 8) and d.inputs.shape == (1, 8, 8)
    assert d.shift.shape == (1, 1, 1)  # one channel: one mean over every pixel
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3
    table = load_dataset(DataSpec(source="digits"), "cross_entropy", seed=0)
    np.testing.assert_array_equal(d.y_train, table.y_train)  # the same split


def test_npz_layouts_images_sequences_and_tokens(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    np.savez(tmp_path / "gray.npz", X=rng.random((40, 6, 5)), y=y)
    np.savez(tmp_path / "rgb.npz", X=rng.random((40, 3, 4, 4)), y=y)
    np.savez(tmp_path / "tokens.npz", X=rng.integers(0, 9, (40, 7)), y=y)
    load = lambda name, **kw: load_dataset(  # noqa: E731
        DataSpec(source=str(tmp_path / name), **kw), "cross_entropy", seed=0
    )
    assert load("gray.npz").inputs.shape == (1, 6, 5)  # rank 3 is an image by default
    assert load("gray.npz", layout="sequence").inputs.shape == (6, 5)
    assert load("rgb.npz").shift.shape == (3, 1, 1)  # per channel
    tokens = load("tokens.npz", layout="sequence")
    assert tokens.inputs.tokens and tokens.x_train.dtype == np.int64 and tokens.shift is None
    with pytest.raises(SpecError, match="data.layout"):
        load("rgb.npz", layout="sequence")


def test_the_adding_problem():
    d = load_dataset(
        DataSpec(source="synthetic-adding", n_samples=200, sequence_length=9, normalize="none"),
        "mse",
        seed=3,
    )
    x, y = d.x_train, d.y_train[:, 0]
    assert x.shape[1:] == (9, 2) and (x[:, :, 1].sum(1) == 2).all()
    np.testing.assert_allclose((x[:, :, 0] * x[:, :, 1]).sum(1), y, rtol=1e-6)
    with pytest.raises(SpecError, match="synthetic-adding is a sequence"):
        parse_spec(
            {"data": {"source": "synthetic-adding", "layout": "image"}, "model": {"module": "m:f"}}
        )


def test_digits_are_scikit_learns_digits_read_without_importing_it():
    import subprocess
    import sys

    from sklearn.datasets import load_digits as sklearn_digits

    from workers.data import load_digits

    x, y = load_digits()
    expected = sklearn_digits()
    np.testing.assert_array_equal(x, expected.data)
    np.testing.assert_array_equal(y, expected.target)
    assert x.dtype == expected.data.dtype and y.dtype == expected.target.dtype
    probe = "import sys; from workers.data import load_digits; load_digits(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# The source registry: each kind declared once, on the spec side and on the loading side.

SOURCE_PROBES = {
    **{name: name for name in BUNDLED_SOURCES},
    "npz": "d.npz",
    "csv": "d.CSV",
    "parquet": "sub/d.parquet",
    "image-directory": "pictures",
    "files": "clicks/*.parquet",
}


def test_every_source_kind_is_declared_once_with_one_loader():
    names = [kind.name for kind in SOURCES]
    suffixes = [kind.suffix for kind in SOURCES if kind.match == "suffix"]
    assert len(set(names)) == len(names) and len(set(suffixes)) == len(suffixes)
    assert set(names) == set(LOADERS) == set(SOURCE_PROBES)
    assert FILE_SUFFIXES == (".npz", ".csv", ".parquet")
    assert set(BUNDLED_SOURCES) == {kind.name for kind in SOURCES if kind.bundled}
    for name, probe in SOURCE_PROBES.items():
        assert [kind.name for kind in SOURCES if kind.matches(probe)] == [name], probe
        assert find_source(probe) is KINDS[name]
    for unknown in ("x.h5", "synthetic-foo", "digits.v2"):
        assert find_source(unknown) is None


@pytest.mark.parametrize(
    "source, fixed, target, categorical, path",
    [
        ("digits", None, False, False, False),
        ("synthetic-classification", "table", False, False, False),
        ("synthetic-adding", "sequence", False, False, False),
        ("synthetic-ctr", "table", False, True, False),
        ("d.npz", None, False, False, True),
        ("d.csv", "table", True, False, True),
        ("pictures", None, False, False, True),
    ],
)
def test_what_the_spec_knows_of_a_source_comes_from_its_entry(
    source, fixed, target, categorical, path
):
    spec = DataSpec(source=source, target="y" if target else None)
    assert spec.kind.fixed_layout == fixed and spec.kind.needs_target == target
    assert spec.has_categorical == categorical and spec.is_path == path
    assert spec.is_image_directory == (source == "pictures")  # a directory is a path, no file


def _pngs(root, classes=("a", "b"), per_class=6):
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (5, 4), color=40 * c + i).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def good_sources(tmp_path):
    """A valid spec for every kind of source, and the loss it fits."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    np.savez(tmp_path / "d.npz", X=np.random.default_rng(0).random((30, 3, 4)), y=np.arange(30) % 3)
    (tmp_path / "d.csv").write_text("\n".join(["a,y"] + [f"{i},{i % 2}" for i in range(30)]))
    pq.write_table(pa.table({"a": np.arange(30.0), "y": np.arange(30) % 2}), tmp_path / "d.parquet")
    (tmp_path / "parts").mkdir()
    for part in range(2):
        table = pa.table({"a": np.arange(20.0), "y": np.arange(20) % 2})
        pq.write_table(table, tmp_path / "parts" / f"{part}.parquet", row_group_size=7)
    return {
        "digits": ({"layout": "image"}, "cross_entropy"),
        "synthetic-classification": ({"n_samples": 60, "n_classes": 3}, "cross_entropy"),
        "synthetic-regression": ({"n_samples": 60, "n_features": 3}, "mse"),
        "synthetic-adding": ({"n_samples": 60, "sequence_length": 4}, "mse"),
        "synthetic-ctr": ({"n_samples": 60, "n_fields": 3}, "bce"),
        "npz": ({"source": str(tmp_path / "d.npz"), "layout": "sequence"}, "cross_entropy"),
        "csv": ({"source": str(tmp_path / "d.csv"), "target": "y"}, "bce"),
        "parquet": ({"source": str(tmp_path / "d.parquet"), "target": "y"}, "cross_entropy"),
        "image-directory": ({"source": str(_pngs(tmp_path / "im")), "layout": "table"}, "bce"),
        "files": (
            {"source": str(tmp_path / "parts" / "*.parquet"), "target": "y", "streaming": False},
            "bce",
        ),
    }


def test_inspect_tells_what_load_gives_for_every_kind(good_sources):
    from workers.data import inspect_data

    assert set(good_sources) == set(LOADERS)
    for name, (fields, loss) in good_sources.items():
        spec = DataSpec(**{"source": name, **fields})
        assert spec.kind.name == name
        info, data = inspect_data(spec, loss), load_dataset(spec, loss, 0, buckets=64)
        assert info.inputs == data.inputs, name
        assert info.rows in (None, len(data.x_train) + len(data.x_val) + len(data.x_test)), name
        assert info.outputs in (None, data.n_outputs), name


def _bad_sources(tmp_path):
    """Specs whose data every load refuses, and which headers (or the spec) already show."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    np.savez(tmp_path / "no-y.npz", X=np.zeros((10, 2)))
    np.savez(tmp_path / "short-y.npz", X=np.zeros((10, 2)), y=np.arange(9) % 2)
    np.savez(tmp_path / "rgb.npz", X=np.zeros((10, 3, 4, 4)), y=np.arange(10) % 2)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    (tmp_path / "d.csv").write_text("a,b,y\n1,x,0\n2,z,1\n")
    pq.write_table(pa.table({"a": [1.0, 2.0], "y": [1, 1]}), tmp_path / "one-class.parquet")
    _pngs(tmp_path / "one-class", classes=("a",))
    _pngs(tmp_path / "im")
    return [
        ({"source": str(tmp_path / "missing.npz")}, "cross_entropy"),
        ({"source": str(tmp_path / "no-y.npz")}, "cross_entropy"),
        ({"source": str(tmp_path / "short-y.npz")}, "cross_entropy"),
        ({"source": str(tmp_path / "rgb.npz"), "layout": "sequence"}, "cross_entropy"),
        ({"source": str(tmp_path / "broken.npz")}, "cross_entropy"),
        ({"source": str(tmp_path / "d.csv"), "target": "c"}, "cross_entropy"),
        ({"source": str(tmp_path / "d.csv"), "target": "y"}, "cross_entropy"),  # b: text
        ({"source": str(tmp_path / "d.csv"), "target": "y", "categorical": ["q"]}, "bce"),
        ({"source": str(tmp_path / "one-class.parquet"), "target": "y"}, "cross_entropy"),
        ({"source": str(tmp_path / "one-class")}, "cross_entropy"),
        ({"source": str(tmp_path / "gone")}, "cross_entropy"),
        ({"source": str(tmp_path / "im"), "layout": "sequence"}, "cross_entropy"),
        ({"source": "digits"}, "bce"),
        ({"source": "synthetic-classification", "n_classes": 3}, "bce"),
    ]


def test_inspect_refuses_what_load_would_refuse(tmp_path):
    from workers.data import inspect_data

    for fields, loss in _bad_sources(tmp_path):
        spec = DataSpec(**fields)
        with pytest.raises(SpecError) as loading:
            load_dataset(spec, loss, 0)
        with pytest.raises(SpecError) as inspecting:
            inspect_data(spec, loss)
        assert inspecting.value.path == loading.value.path, (fields, str(inspecting.value))


def test_workers_read_paths_as_given_and_leave_confinement_to_admission(tmp_path):
    from workers.data import inspect_data

    with pytest.raises(ValueError, match="confine_paths"):
        load_dataset(DataSpec(source="digits"), "cross_entropy", 0, tmp_path)
    with pytest.raises(ValueError, match="confine_paths"):
        inspect_data(DataSpec(source="digits"), "cross_entropy", tmp_path)
