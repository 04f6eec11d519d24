"""Directories of images and augmentation, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ps.errors import SpecError
from ps.jobs.admission import admit
from ps.jobs.runner import run_job
from ps.spec import parse_spec
from workers.data import load_dataset
from workers.evaluation import evaluate
from workers.models import load_model

CNN = {
    "layers": [
        {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "max_pool2d", "pool_size": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 10},
    ]
}


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory):
    """scikit-learn's digits as 16×16 PNGs, one folder per class name: grayscale, with some RGB
    files after each class's first (converted to grayscale, as the first images are)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("pngs")
    d = load_digits()
    for i, (image, label) in enumerate(zip(d.images[:600], d.target[:600], strict=True)):
        folder = root / f"digit-{label}"
        first = not folder.exists()
        folder.mkdir(exist_ok=True)
        pil = Image.fromarray((image * 16).astype(np.uint8)).resize((16, 16))
        (pil.convert("RGB") if i % 10 == 0 and not first else pil).save(folder / f"{i:04d}.png")
    return root


def test_a_directory_of_pngs_trains_with_augmentation_that_evaluation_never_sees(
    ray_runtime, digit_pngs, tmp_path
):
    job = {
        "seed": 1,
        "data": {
            "source": str(digit_pngs), "image_size": [8, 8],
            "augment": {"shift": 1, "rotate": 10, "noise": 0.2},
        },
        "model": CNN,
        "optimizer": {"name": "adam", "lr": 0.01},
        "training": {"workers": 2, "batch_size": 32, "epochs": 15},
    }  # fmt: skip
    spec = parse_spec(job)
    result = run_job(spec, tmp_path)
    assert result.test_accuracy > 0.7, result.test_accuracy
    data = load_dataset(spec.data, "cross_entropy", spec.seed)
    assert data.inputs.shape == (1, 8, 8) and data.classes == [f"digit-{k}" for k in range(10)]
    model = load_model(tmp_path / "model.pt")
    x, y, _ = data.split("val")
    metrics = evaluate(model.net, x, y, "cross_entropy")
    assert metrics["accuracy"] == pytest.approx(result.val_accuracy)  # un-augmented validation
    raw = torch.from_numpy(
        np.stack(
            [
                np.asarray(
                    Image.open(next((digit_pngs / "digit-3").iterdir()))
                    .convert("L")
                    .resize((8, 8)),
                    np.float32,
                )
                / 255
            ]
        )
    )
    assert model.predict(raw[:, None]).shape == (1,)


def test_bad_image_directories_are_refused_with_the_files_named(digit_pngs, tmp_path):
    empty = tmp_path / "empty"
    (empty / "only-class").mkdir(parents=True)
    with pytest.raises(SpecError) as info:
        admit(parse_spec({"data": {"source": str(empty)}, "model": CNN}))
    assert info.value.path == "data.source" and "0 class(es)" in info.value.message
    broken = tmp_path / "broken"
    for name in ("a", "b"):
        (broken / name).mkdir(parents=True)
        Image.new("L", (8, 8)).save(broken / name / "ok.png")
    (broken / "b" / "z-garbage.png").write_bytes(b"not a png")
    spec = parse_spec(
        {
            "data": {"source": str(broken)},
            "model": {**CNN, "layers": [*CNN["layers"][:-1], {"type": "dense", "units": 2}]},
        }
    )
    admit(spec)  # listing only: the broken file is found when the images are read
    with pytest.raises(SpecError) as info:
        load_dataset(spec.data, "cross_entropy", 0)
    assert info.value.path == "data.source" and "b/z-garbage.png" in info.value.message
    with pytest.raises(SpecError) as info:
        admit(parse_spec({"data": {"source": str(tmp_path / "missing")}, "model": CNN}))
    assert info.value.path == "data.source" and "directory not found" in info.value.message
