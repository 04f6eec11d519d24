"""Augmentation of training images on the worker, vectorized over the batch.

Each sample gets its own random affine transform (rotation, zoom, shift, optional left-right
flip) applied with one ``affine_grid`` / ``grid_sample`` over the batch, then Gaussian noise.
The draws come from a generator seeded with (seed, worker, step), so a step replayed by a
replacement worker sees the same images. Pixels moved in from outside the image repeat the
nearest edge pixel (the background, for most images: a constant would be the training mean after
standardization, a grey frame).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from ps.spec.data import AugmentSpec

SALT = 0x5EED_A116  # keeps the augmentation draws apart from dropout's (same step seed)


def augment_batch(x: Tensor, spec: AugmentSpec, seed: int) -> Tensor:
    """``x`` ``(batch, channels, height, width)`` transformed as ``spec`` says (a new tensor)."""
    if spec.identity or not len(x):
        return x
    n, _, height, width = x.shape
    gen = torch.Generator().manual_seed((seed ^ SALT) % (2**63 - 1))

    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)

    angle = uniform(-spec.rotate, spec.rotate) * (math.pi / 180)
    zoom = uniform(*spec.scale)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if spec.hflip else None

    # Pixels → affine_grid's [-1, 1] coordinates (a shift of `shift` pixels is 2·shift / side).
    def pixels(side: int) -> Tensor:  # whole pixels, in affine_grid's units
        drawn = torch.randint(-spec.shift, spec.shift + 1, (n,), generator=gen)
        return drawn.double() * 2 / side

    tx, ty = pixels(width), pixels(height)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
    )  # output → input sampling: the inverse of the zoom, so zoom > 1 enlarges
    if flip is not None:
        theta[:, :, 0] *= flip[:, None].double()
    noise = None
    if spec.noise:
        noise = torch.randn(x.shape, generator=gen) * spec.noise
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if noise is not None:
        out = out + noise.to(device=x.device, dtype=x.dtype)
    return out
