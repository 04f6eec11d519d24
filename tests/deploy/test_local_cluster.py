"""A real Ray cluster started with `ray start` (deploy/local/cluster.sh): the service runs a job on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import ray

from ps.client import Client
from tests.conftest import free_port
from tests.runtime.helpers import spec

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "cluster.sh"

LIST_ACTORS = textwrap.dedent(
    """
    import json, sys, ray
    from ray.util.state import list_actors, list_tasks
    ray.init(address=sys.argv[1], logging_level="ERROR")
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    actors = [a for a in list_actors(address=sys.argv[2], limit=10000) if a.name and sys.argv[3] in a.name]
    # A job's workers are Ray tasks (finished by now), named like its actors.
    tasks = [t for t in list_tasks(address=sys.argv[2], limit=10000) if t.name and sys.argv[3] in t.name]
    placed = {a.name: a.node_id for a in actors} | {t.name: t.node_id for t in tasks}
    print(json.dumps({"nodes": sorted(nodes), "actors": placed}))
    """
)


def _pids(state: Path) -> list[int]:
    return [int(p.read_text()) for p in state.glob("*.pid")]


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its reaper."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.fixture
def short_dir():
    # Ray's unix sockets live under the state dir, and AF_UNIX paths are limited to 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="psc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_service_on_a_ray_start_cluster(ray_runtime, short_dir):
    ports = {
        name: str(free_port())
        for name in ("RAY_PORT", "DASHBOARD_PORT", "PS_PORT", "PS_METRICS_PORT")
    }
    env = {
        **os.environ,
        **ports,
        "PS_CLUSTER_DIR": str(short_dir),
        "VENV": str(Path(sys.executable).parent.parent),
        "HEAD_CPUS": "1",
        "WORKER_CPUS": "1",
        "RAY_ADDRESS": "",
    }
    up = subprocess.run(
        [str(SCRIPT), "up", "--workers", "1"], env=env, capture_output=True, text=True, timeout=240
    )
    state = short_dir
    try:
        assert up.returncode == 0, (
            up.stdout + up.stderr + "".join(p.read_text() for p in state.glob("*.log"))
        )
        assert len(_pids(state)) == 3  # head, one worker node, the service
        with Client(f"127.0.0.1:{ports['PS_PORT']}") as client:
            client.submit(spec(training={"workers": 2, "epochs": 3}), job_id="on-cluster")
            final = [e for e in client.watch("on-cluster")][-1].finished
        assert final.error == "" and final.result.test_accuracy > 0.8
        listing = subprocess.run(
            [
                sys.executable,
                "-c",
                LIST_ACTORS,
                f"127.0.0.1:{ports['RAY_PORT']}",
                f"http://127.0.0.1:{ports['DASHBOARD_PORT']}",
                "on-cluster",
            ],
            env={**env, "RAY_AUTH_MODE": "token"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listing.returncode == 0, listing.stderr
        placed = json.loads(listing.stdout.strip().splitlines()[-1])
        assert len(placed["nodes"]) == 2
        workers = {name: node for name, node in placed["actors"].items() if ":worker:" in name}
        assert len(workers) == 2 and set(workers.values()) == set(
            placed["nodes"]
        )  # one per 1-CPU node
        assert any(name.endswith(":supervisor") for name in placed["actors"])
    finally:
        pids = _pids(state)
        down = subprocess.run(
            [str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert not any(_alive(pid) for pid in pids)
    # Only what it started was stopped: this test session's own Ray still works.
    assert ray.get(ray.put(41)) + 1 == 42
    if not ray.is_initialized():
        pytest.fail("the session's Ray was stopped")
