"""What every spec section shares: strict, frozen, finite models, and the budgets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

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
