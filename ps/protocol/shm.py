"""Same-node shared memory for the parameter transport: flat float32 buffers in /dev/shm.

A worker keeps its flat parameters and gradient in two files under /dev/shm; a shard on the same
node maps them and, inside its pull and push handlers, copies its slice straight in or out. The
Ray calls then carry only small control messages. Files are plain ``np.memmap`` (no
``multiprocessing`` resource tracker that would unlink them behind our back) and named
``ps-<job_id>-...`` so that whatever a killed process left behind can be removed by prefix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SHM_DIR = Path("/dev/shm")


def available() -> bool:
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)


def prefix(job_id: str) -> str:
    # '+' cannot occur in a job id, so one job's prefix is never a prefix of another's.
    return f"ps-{job_id}+"


def create(name: str, size: int) -> np.memmap:
    """A new zero-filled float32 buffer of ``size`` floats named ``name`` (replaced if it exists)."""
    path = SHM_DIR / name
    path.unlink(missing_ok=True)
    return np.memmap(path, dtype=np.float32, mode="w+", shape=(size,))


def attach(name: str) -> np.memmap:
    """Map an existing buffer (read-write)."""
    return np.memmap(SHM_DIR / name, dtype=np.float32, mode="r+")


def unlink(name: str) -> None:
    (SHM_DIR / name).unlink(missing_ok=True)


def unlink_prefix(name_prefix: str) -> int:
    """Remove every buffer whose name starts with ``name_prefix``; returns how many."""
    removed = 0
    if SHM_DIR.is_dir():
        for path in SHM_DIR.glob(f"{name_prefix}*"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def existing(name_prefix: str) -> list[str]:
    return sorted(p.name for p in SHM_DIR.glob(f"{name_prefix}*")) if SHM_DIR.is_dir() else []
