"""Pause points for tests: a test can hold a job's supervisor at a named point to act inside a
window that is too short to hit otherwise (never used in production).

A point pauses only where the process has ``PS_TEST_PAUSE_DIR`` set (a test sets it in the
supervisor's runtime environment) and the test created ``<dir>/<point>.hold``: the supervisor
then creates ``<point>.reached`` and waits (at most :data:`MAX_PAUSE_S`) for ``<point>.go``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_DIR_ENV = "PS_TEST_PAUSE_DIR"
MAX_PAUSE_S = 120.0


def pause_at(point: str) -> None:
    """Wait here while a test holds ``point`` (returns at once everywhere else)."""
    folder = os.environ.get(PAUSE_DIR_ENV)
    if not folder or not (Path(folder) / f"{point}.hold").exists():
        return
    (Path(folder) / f"{point}.reached").touch()
    deadline = time.monotonic() + MAX_PAUSE_S
    while not (Path(folder) / f"{point}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
