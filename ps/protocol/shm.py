"""Same-node shared memory for the parameter transport: flat float32 buffers in /dev/shm.

A worker keeps its flat parameters and gradient in two files under /dev/shm; a shard on the same
node maps them and, inside its pull and push handlers, copies its slice straight in or out. The
Ray calls then carry only small control messages. Files are plain ``np.memmap`` (no
``multiprocessing`` resource tracker that would unlink them behind our back) and named
``ps-<job_id>-...`` so that whatever a killed process left behind can be removed by prefix.
"""

from __future__ import annotations

import os
import time
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


def _mapped_paths() -> set[str]:
    """Every file some process of this user has mapped (from /proc/<pid>/maps)."""
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:  # gone meanwhile, or another user's
            continue
        for line in text.splitlines():
            fields = line.split(maxsplit=5)  # address perms offset device inode [path]
            if len(fields) == 6 and fields[5].startswith(f"{SHM_DIR}/"):
                mapped.add(fields[5].strip())
    return mapped


def sweep_orphans(min_age_s: float = 60.0) -> list[str]:
    """Remove this user's ``ps-*`` buffers on this node that no process maps any more and that
    are older than ``min_age_s`` (a buffer being created is mapped at once; the age covers the
    instant before): what killed workers left. Returns their names."""
    if not SHM_DIR.is_dir():
        return []
    uid, now = os.getuid(), time.time()
    candidates = []
    for path in SHM_DIR.glob("ps-*"):
        try:
            info = path.stat()
        except OSError:
            continue
        if info.st_uid == uid and now - info.st_mtime > min_age_s:
            candidates.append(path)
    if not candidates:
        return []
    mapped = _mapped_paths()
    removed = []
    for path in candidates:
        if str(path) not in mapped:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
