"""A process dying in the middle of writing a checkpoint leaves the previous one loadable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from ps.server.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    read_checkpoint,
    write_checkpoint,
)

WRITER = textwrap.dedent(
    """
    import os, sys, torch
    from pathlib import Path
    from ps.server import checkpoint

    real_save = torch.save
    calls = []

    def dying_save(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        calls.append(path)
        if len(calls) == 2:
            os._exit(17)  # the process dies between two shard files

    checkpoint.torch.save = dying_save
    shard = {"version": 20, "params": torch.full((4,), 2.0)}
    checkpoint.write_checkpoint(Path(sys.argv[1]), 20, [shard, shard, shard], {"job_id": "j"}, keep=3)
    """
)


def test_crash_mid_write_keeps_the_previous_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    write_checkpoint(
        root, 10, [{"version": 10, "params": torch.ones(4)}] * 3, {"job_id": "j"}, keep=3
    )
    crashed = subprocess.run(
        [sys.executable, "-c", WRITER, str(root)], capture_output=True, text=True
    )
    assert crashed.returncode == 17, crashed.stderr
    assert (root / "step-00000020.incomplete").is_dir()  # the half-written one is there ...
    latest = latest_checkpoint(root)
    assert latest is not None and latest.name == "step-00000010"  # ... and ignored
    meta, shards = read_checkpoint(latest)
    assert meta["version"] == 10 and len(shards) == 3
    torch.testing.assert_close(shards[2]["params"], torch.ones(4))
    # The next successful write replaces the leftover and prunes to `keep`.
    for version in (20, 30, 40):
        write_checkpoint(
            root, version, [{"version": version, "params": torch.zeros(4)}], {}, keep=2
        )
    assert [p.name for p in list_checkpoints(root)] == ["step-00000030", "step-00000040"]
    assert not (root / "step-00000020.incomplete").exists()
