"""Directories of images: one sub-directory per class, PNG / JPEG / BMP / GIF / WebP files read
with Pillow.

Admission only lists the directory and reads the headers of each class's first image: RGB if
any of them is in colour, else grayscale; their first's size is the default ``image_size``. The
job's supervisor decodes every file once, converts it to that mode and resizes it to
``data.image_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ps.errors import SpecError, clip

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MAX_IMAGES = 1_000_000
MAX_LISTED = 10  # unreadable files named in an error
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F", "P")


@dataclass(frozen=True)
class ImageDirectory:
    """What listing a directory of images found.

    Attributes:
        classes: the class names (sub-directories with images), sorted.
        files: per class, its image files, sorted.
        size: (height, width) of the first image; ``channels``: 1 (grayscale) or 3 (RGB, if
            the first image of any class is in colour).
    """

    classes: tuple[str, ...]
    files: tuple[tuple[Path, ...], ...]
    size: tuple[int, int]
    channels: int

    @property
    def rows(self) -> int:
        return sum(len(f) for f in self.files)


def inspect_image_directory(path: Path) -> ImageDirectory:
    """List ``path``'s classes and images, and read the first image's header.

    Raises:
        SpecError: at ``data.source``: no class sub-directories with images, too many images, or
            a first image Pillow cannot open.
    """
    from PIL import Image, UnidentifiedImageError

    classes, files = [], []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)
        if images:
            classes.append(sub.name)
            files.append(tuple(images))
    if len(classes) < 2:
        raise SpecError(
            "data.source",
            f"{clip(str(path))} has {len(classes)} class(es): a directory of images needs one "
            f"sub-directory per class (at least 2) holding {' / '.join(SUFFIXES)} files",
        )
    total = sum(len(f) for f in files)
    if total > MAX_IMAGES:
        raise SpecError("data.source", f"{total:,} images, more than {MAX_IMAGES:,}")
    sizes, modes = [], []
    for images in files:  # the first image of each class: headers only
        try:
            with Image.open(images[0]) as image:
                sizes.append((image.height, image.width))
                modes.append(image.mode)
        except (OSError, UnidentifiedImageError) as exc:
            raise SpecError("data.source", f"cannot read {clip(images[0].name)}: {exc}") from None
    channels = 1 if all(m in GRAYSCALE_MODES for m in modes) else 3
    return ImageDirectory(tuple(classes), tuple(files), sizes[0], channels)


def load_image_directory(
    path: Path, image_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Every image as float32 ``(N, C, H, W)`` in [0, 1], and its class name.

    Raises:
        SpecError: at ``data.source``, naming up to 10 files that cannot be read.
    """
    from PIL import Image, UnidentifiedImageError

    found = inspect_image_directory(path)
    height, width = image_size or found.size
    mode = "L" if found.channels == 1 else "RGB"
    x = np.empty((found.rows, found.channels, height, width), np.float32)
    y = np.empty(found.rows, dtype=object)
    bad: list[str] = []
    i = 0
    for name, images in zip(found.classes, found.files, strict=True):
        for file in images:
            try:
                with Image.open(file) as image:
                    image = image.convert(mode)
                    if image.size != (width, height):
                        image = image.resize((width, height), Image.Resampling.BILINEAR)
                    pixels = np.asarray(image, dtype=np.float32) / 255.0
            except (OSError, UnidentifiedImageError, ValueError):
                bad.append(f"{name}/{file.name}")
                continue
            x[i] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
            y[i] = name
            i += 1
    if bad:
        listed = ", ".join(clip(b) for b in bad[:MAX_LISTED])
        more = f" and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise SpecError("data.source", f"{len(bad)} image(s) cannot be read: {listed}{more}")
    return x, y.astype(str)
