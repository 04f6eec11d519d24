"""How the flat parameter vector is split into the shards' slices."""

from __future__ import annotations


def param_slices(n_params: int, shards: int, allow_empty: bool = False) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) slices, sizes differing by at most one float (balanced work and bytes).
    ``allow_empty``: more shards than parameters (the rest keep embedding rows only).

    Raises:
        ValueError: more shards than parameters (unless allowed).
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    if shards > n_params and not allow_empty:
        raise ValueError(f"{shards} shards for only {n_params} parameters")
    base, extra = divmod(n_params, shards)
    bounds, lo = [], 0
    for i in range(shards):
        hi = lo + base + (1 if i < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds
