"""Chaos tests kill real processes; afterwards the cluster must have all its CPUs back."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import ray

from tests.conftest import wait_until
from tests.service.conftest import service  # noqa: F401 - a fixture shared with these tests


@pytest.fixture(autouse=True)
def no_leaked_actors(ray_runtime):
    yield
    total = ray.cluster_resources()["CPU"]
    wait_until(
        lambda: ray.available_resources().get("CPU", 0) == total,
        60,
        what=f"all {total} CPUs to be free again (leaked actors?)",
    )


def kill_actor(name: str) -> int:
    """SIGKILL the process of the live actor called ``name`` (found through Ray's state API), or
    of the running task called ``name`` (a job's workers are tasks)."""
    from ray.util.state import list_actors

    address = os.environ["PS_TEST_DASHBOARD"]

    def find():
        actors = list_actors(
            address=address, filters=[("name", "=", name), ("state", "=", "ALIVE")]
        )
        return actors[0].pid if actors else running_task(name)

    pid = wait_until(find, 30, what=f"actor or task {name} to be running")
    os.kill(pid, signal.SIGKILL)
    return pid


def running_task(name: str) -> int | None:
    """The pid of the process running the task called ``name`` on this machine: Ray titles it
    ``ray::<name>`` while the task runs. (The state API lists tasks from events that arrive
    late under load.)"""
    title = f"ray::{name}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip() == title:
                    return int(entry.name)
            except OSError:  # the process ended meanwhile
                continue
    return None


def shard_version(job_id: str) -> int:
    try:
        return ray.get(ray.get_actor(f"ps:{job_id}:shard:0").stats.remote(), timeout=10).version
    except Exception:  # noqa: BLE001 - not created yet, or being replaced
        return -1
