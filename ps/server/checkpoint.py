"""Checkpoint files: one directory per step, written atomically, the newest ``keep`` kept.

Layout: ``checkpoints/step-00000200/{meta.json, shard-0.pt, ...}``. A checkpoint is written into
``step-00000200.incomplete/``, every file fsynced, then renamed; a crash mid-write leaves only an
``.incomplete`` directory, which :func:`latest_checkpoint` ignores.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

PREFIX = "step-"
INCOMPLETE = ".incomplete"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(
    root: Path,
    version: int,
    shards: list[dict[str, Any]],
    meta: dict[str, Any],
    keep: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the shards' states, ``extra`` files (name -> object) and the job's metadata for
    ``version``; prune to ``keep``."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{version:08d}"
    tmp = root / f"{PREFIX}{version:08d}{INCOMPLETE}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for i, shard in enumerate(shards):
        torch.save(shard, tmp / f"shard-{i}.pt")
        _fsync(tmp / f"shard-{i}.pt")
    for name, obj in (extra or {}).items():
        torch.save(obj, tmp / name)
        _fsync(tmp / name)
    (tmp / "meta.json").write_text(json.dumps({**meta, "version": version, "shards": len(shards)}))
    _fsync(tmp / "meta.json")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    _fsync(root)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_step(checkpoint: Path) -> int:
    """The step a checkpoint directory (``step-NNNNNNNN``) was taken at."""
    return int(checkpoint.name[len(PREFIX) :])


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    if not root.is_dir():
        return []
    done = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and not p.name.endswith(INCOMPLETE)
    ]
    return sorted(done, key=checkpoint_step)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_checkpoint(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(meta, shard states) of a complete checkpoint directory."""
    meta = json.loads((path / "meta.json").read_text())
    shards = [torch.load(path / f"shard-{i}.pt", weights_only=True) for i in range(meta["shards"])]
    return meta, shards
