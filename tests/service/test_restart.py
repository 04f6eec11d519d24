"""Restarting the service process keeps every finished job's record and result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ps.client import Client
from ps.jobs.state import JobState
from ps.jobs.store import JobStore
from ps.spec import parse_spec
from tests.runtime.helpers import spec

ROOT = Path(__file__).resolve().parents[2]


def _serve(storage: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ps.cli", "serve", "--port", "0", "--storage", str(storage)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PS_TOKEN": "restart-token", "RAY_ADDRESS": ""},
    )
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"server did not start: {line}{proc.stderr.read()}")
    return proc, line.split("listening on ")[1].split()[0]


def test_finished_jobs_survive_a_restart_and_interrupted_ones_run_again(tmp_path):
    storage = tmp_path / "storage"
    proc, address = _serve(storage)
    try:
        client = Client(address, token="restart-token")
        client.submit(spec(training={"workers": 1, "epochs": 2}), job_id="before")
        final = [e for e in client.watch("before")][-1].finished
        assert final.result.test_accuracy > 0.5
        result_before = final.result.result_json
        client.close()
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash, not a clean stop
        proc.wait(timeout=30)

    # A job the store believed was running when the service died (its Ray died with the service).
    store = JobStore(storage / "jobs.db")
    store.create("orphan", "", parse_spec(spec()).to_dict(), str(storage / "orphan"))
    store.transition("orphan", JobState.RUNNING)
    store.close()

    proc, address = _serve(storage)
    try:
        client = Client(address, token="restart-token")
        jobs = {j.job_id: j for j in client.list()}
        assert jobs["before"].result.result_json == result_before
        # Its supervisor died with the old service: it is started again and runs to the end.
        orphan = [e for e in client.watch("orphan")][-1].finished
        assert orphan.error == "" and orphan.result.test_accuracy > 0.5
        assert orphan.attempts == 1
        assert (storage / "before" / "model.pt").is_file()
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
