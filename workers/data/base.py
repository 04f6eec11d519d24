"""What every source's loader produces and shares: raw samples, the cheap look at a source
(:class:`DataInfo`), the arrangement of samples into a layout, and targets for a loss."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ps.errors import SpecError
from ps.spec import DataSpec
from workers.layers import Input


@dataclass(frozen=True)
class DataInfo:
    """What is known of a data source without loading it (the cheap check at submission).

    Attributes:
        rows: samples in the source, or None where the format does not say (csv).
        inputs: the per-sample shape the model takes (and whether it is integer tokens).
        outputs: units of the model's last layer for the spec's loss, or None where only the
            full load can tell (a csv target column).
        distinct_ids: at most how many distinct categorical ids the data can have (None:
            unknown, or no categorical features).
    """

    rows: int | None
    inputs: Input
    outputs: int | None
    distinct_ids: int | None = None

    @property
    def nbytes(self) -> int | None:
        """Size of the inputs in memory, where the row count is known."""
        if self.rows is None:
            return None
        values = math.prod(self.inputs.shape) * (8 if self.inputs.tokens else 4)
        return self.rows * (values + 8 * self.inputs.fields)


@dataclass
class Raw:
    """Samples as a source's loader reads them, before arrangement, splitting and normalization.

    ``ids`` are the hashed categorical fields ``(n, fields)`` (None: none), ``fields`` their
    names and ``numeric`` the names of the numeric columns in ``x``.
    """

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray | None = None
    fields: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()


def layout_of(spec: DataSpec) -> str | None:
    """The spec's layout, or its source's default (None: by the samples' rank)."""
    return spec.kind.layout(spec.layout)


def arrange_shape(sample: tuple[int, ...], integers: bool, layout: str | None, name: str) -> Input:
    """The per-sample shape of raw samples of shape ``sample`` in ``layout`` (None: a table for
    rank 1, an image for ranks 2 and 3).

    Raises:
        SpecError: a layout the samples cannot have.
    """
    rank = len(sample)
    layout = layout or ("table" if rank == 1 else "image")
    if layout == "image" and rank in (2, 3):
        return Input(sample if rank == 3 else (1, *sample))
    if layout == "sequence" and rank == 1:
        return Input(sample, tokens=True) if integers else Input((*sample, 1))
    if layout == "sequence" and rank == 2:
        return Input(sample)
    if layout == "table":
        return Input((math.prod(sample),))
    raise SpecError(
        "data.layout",
        f"{name}: samples of shape {sample} cannot be a {layout} (a table is (features,), an "
        "image (height, width) or (channels, height, width), a sequence (steps,) of integer "
        "tokens or (steps, features))",
    )


def targets(y: np.ndarray, loss: str) -> tuple[np.ndarray, list]:
    """The targets for ``loss`` — float32 ``(n, targets)`` (mse), 0/1 float32 (bce) or int64
    class indices (cross_entropy) — and the original labels of the classes.

    Raises:
        SpecError: targets that do not fit the loss.
    """
    if loss == "mse":
        try:
            y = y.astype(np.float32)
        except ValueError:
            raise SpecError("data.target", "loss 'mse' needs numeric targets") from None
        return (y.reshape(len(y), -1), [])
    classes, index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise SpecError(
            "data.target", f"loss {loss!r} needs at least 2 classes, found {len(classes)}"
        )
    labels = [c.item() if hasattr(c, "item") else c for c in classes]
    if loss == "bce":
        if len(classes) != 2:
            raise SpecError("model.loss", f"'bce' needs exactly 2 classes, found {len(classes)}")
        return index.astype(np.float32), labels
    return index.astype(np.int64), labels


def outputs_for_classes(classes: int, loss: str) -> int | None:
    """Units of the last layer for ``classes`` classes (None: mse, where classes are no targets).

    Raises:
        SpecError: ``bce`` with other than 2 classes.
    """
    if loss == "bce" and classes != 2:
        raise SpecError("model.loss", f"'bce' needs exactly 2 classes, found {classes}")
    return {"cross_entropy": classes, "bce": 1}.get(loss)


def outputs(y: np.ndarray, loss: str) -> int:
    """Units of the last layer for the targets ``y``."""
    y, classes = targets(np.asarray(y), loss)
    if loss == "mse":
        return y.shape[1]
    return len(classes) if loss == "cross_entropy" else 1
