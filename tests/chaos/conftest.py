"""Chaos tests kill real processes; afterwards the cluster must have all its CPUs back."""

from __future__ import annotations

import os
import signal

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
    """SIGKILL the process of the live actor, or the running task (a job's workers are tasks),
    called ``name``, found through Ray's state API."""
    from ray.util.state import list_actors, list_tasks

    address = os.environ["PS_TEST_DASHBOARD"]

    def find():
        actors = list_actors(
            address=address, filters=[("name", "=", name), ("state", "=", "ALIVE")]
        )
        if actors:
            return actors[0].pid
        # The state API may cut a listing at its limit before it filters: ask for all of them.
        tasks = list_tasks(address=address, filters=[("name", "=", name)], limit=10_000)
        running = [t for t in tasks if t.state.startswith("RUNNING") and t.worker_pid]
        return running[0].worker_pid if running else None

    pid = wait_until(find, 30, what=f"actor or task {name} to be running")
    os.kill(pid, signal.SIGKILL)
    return pid


def shard_version(job_id: str) -> int:
    try:
        return ray.get(ray.get_actor(f"ps:{job_id}:shard:0").stats.remote(), timeout=10).version
    except Exception:  # noqa: BLE001 - not created yet, or being replaced
        return -1
