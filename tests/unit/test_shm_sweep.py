"""Buffers a killed worker left in /dev/shm are swept; buffers a live process maps, or one
being created, are not."""

from __future__ import annotations

import os
import time
import uuid

from ps.protocol import shm


def test_only_unmapped_old_buffers_are_swept():
    tag = uuid.uuid4().hex[:8]
    left, held, young = (f"ps-sweep{tag}+{name}" for name in ("left", "held", "young"))
    shm.create(left, 16).flush()
    mapped = shm.create(held, 16)  # a live worker's buffer: mapped here
    shm.create(young, 16).flush()
    old = time.time() - 3600
    for name in (left, held):
        os.utime(shm.SHM_DIR / name, (old, old))
    try:
        removed = shm.sweep_orphans(min_age_s=60)
        assert left in removed and held not in removed and young not in removed
        assert shm.existing(f"ps-sweep{tag}+") == sorted([held, young])
    finally:
        del mapped
        shm.unlink_prefix(f"ps-sweep{tag}+")
