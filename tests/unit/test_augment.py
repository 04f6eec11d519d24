"""Augmentation: deterministic per (seed, worker, step), vectorized, and what each knob does."""

from __future__ import annotations

import pytest
import torch

from ps.errors import SpecError
from ps.spec import parse_spec
from ps.spec.data import AugmentSpec
from workers.augment import augment_batch
from workers.worker import step_seed

BATCH = torch.rand(16, 1, 12, 12)


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    spec = AugmentSpec(shift=2, rotate=15, scale=(0.9, 1.1), hflip=True, noise=0.1)
    a = augment_batch(BATCH, spec, step_seed(0, 1, 7))
    assert torch.equal(a, augment_batch(BATCH, spec, step_seed(0, 1, 7)))  # a replayed step
    assert not torch.equal(a, augment_batch(BATCH, spec, step_seed(0, 2, 7)))  # another worker
    assert not torch.equal(a, augment_batch(BATCH, spec, step_seed(0, 1, 8)))  # another step
    assert a.shape == BATCH.shape and not torch.equal(a, BATCH)


def test_no_augmentation_leaves_the_batch_and_a_flip_or_an_integer_shift_moves_pixels():
    assert augment_batch(BATCH, AugmentSpec(), 3) is BATCH
    image = torch.zeros(1, 1, 4, 4)
    image[0, 0, 1, 0] = 1.0
    flipped = augment_batch(image.expand(64, 1, 4, 4), AugmentSpec(hflip=True), 5)
    hits = {tuple(torch.nonzero(f[0] > 0.99).tolist()[0]) for f in flipped}
    assert hits == {(1, 0), (1, 3)}  # left-right mirrored, or not
    dot = torch.zeros(1, 1, 6, 6)
    dot[0, 0, 2, 3] = 1.0
    shifted = augment_batch(dot.expand(64, 1, 6, 6), AugmentSpec(shift=1), 5)[:, 0]
    rows, cols = torch.arange(6.0)[:, None], torch.arange(6.0)[None, :]
    mass = shifted.sum(dim=(1, 2))
    assert torch.allclose(mass, torch.ones(64), atol=1e-5)  # the dot stays inside
    dy = (shifted * rows).sum(dim=(1, 2)) - 2
    dx = (shifted * cols).sum(dim=(1, 2)) - 3
    assert dx.abs().max() <= 1 + 1e-5 and dy.abs().max() <= 1 + 1e-5
    assert dx.abs().max() > 0.5 and dy.abs().max() > 0.5  # and it does move


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"source": "digits", "augment": {"shift": 1}}, "data.augment"),
        ({"source": "synthetic-regression", "augment": {"rotate": 5}}, "data.augment"),
        ({"source": "digits", "layout": "image", "augment": {"scale": [1.2, 0.9]}}, "data.augment.scale"),
        ({"source": "digits", "layout": "image", "augment": {"rotate": 270}}, "data.augment.rotate"),
        ({"source": "digits", "image_size": [8, 8]}, "data.image_size"),
    ],
)  # fmt: skip
def test_augmentation_of_what_is_not_an_image_is_refused_with_the_key(data, path):
    with pytest.raises(SpecError) as info:
        parse_spec(
            {
                "data": data,
                "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]},
            }
        )
    assert info.value.path == path, info.value
