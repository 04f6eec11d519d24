"""What every spec section shares: strict, frozen, finite models, and the budgets."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

# Budgets checked before anything is allocated (docs/operations.md, "Limits").
MAX_PATH_CHARS = 4096
MAX_NAME_CHARS = 200
MAX_LAYERS = 1000
MAX_SYNTHETIC_VALUES = 100_000_000  # n_samples × n_features of a generated dataset
MAX_INIT_MAGNITUDE = 1e6  # initializer means, bounds and spreads


class _Strict(BaseModel):
    # allow_inf_nan=False: every float in a spec is finite (inf/NaN would be stored as null and
    # could never be read back).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _plain_text(v: str, limit: int) -> str:
    if "\x00" in v:
        raise ValueError("must not contain a NUL character")
    if len(v) > limit:
        raise ValueError(f"is {len(v)} characters long (at most {limit})")
    return v


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 2**10, "m": 1000**2, "mb": 1000**2}
_UNITS |= {"mib": 2**20, "g": 1000**3, "gb": 1000**3, "gib": 2**30, "tb": 1000**4, "tib": 2**40}


def parse_bytes(v: object) -> object:
    """A size as a number of bytes: an integer, or a string such as ``2GiB``, ``512 MiB`` or
    ``100MB`` (powers of 1024 for KiB/MiB/GiB/TiB, of 1000 for KB/MB/GB/TB)."""
    if not isinstance(v, str):
        return v
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", v)
    unit = match and _UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise ValueError(f"{v[:40]!r} is not a size (e.g. 2GiB, 512MiB, 100MB or bytes)")
    return int(float(match.group(1)) * unit)


Bytes = Annotated[int, BeforeValidator(parse_bytes)]
"""A byte count that a spec may write with a unit (``2GiB``)."""
