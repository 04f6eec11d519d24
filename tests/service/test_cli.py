"""`psctl` as a user runs it (a subprocess, no terminal, 80 columns) against a real service."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ps.client import Client, JobState
from tests.runtime.helpers import spec
from tests.service.conftest import TOKEN

LONG_ID = "job-634e37a1b2c3d4e5f6a7b8c9d0e1f2a3"


def psctl(service, *args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", "PS_SERVER": service.address, "PS_TOKEN": TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "ps.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_job_commands_read_well_at_80_columns(service, tmp_path):
    client = service.client()
    client.submit(spec(training={"workers": 1, "epochs": 1}), job_id=LONG_ID)
    assert [e for e in client.watch(LONG_ID)][-1].finished.result.steps > 0
    client.submit(spec(training={"workers": 1, "epochs": 50}), job_id=LONG_ID + "-x")
    client.cancel(LONG_ID + "-x")

    listed = psctl(service, "list")
    assert listed.returncode == 0, listed.stderr
    assert LONG_ID in listed.stdout and f"{LONG_ID}-x" in listed.stdout  # never cut
    assert f"{LONG_ID}-x: cancelled" in listed.stdout  # its error on a line of its own

    status = psctl(service, "status", LONG_ID, "--json")
    assert json.loads(status.stdout)["state"] == "SUCCEEDED"  # the spelling of the docs
    assert Client.state(client.get(LONG_ID)) is JobState.SUCCEEDED == "SUCCEEDED"

    # A refused export writes nothing: not found, an unknown format.
    for args in (["nope", "-o", "x.pt"], [LONG_ID, "-o", "y.onnx", "--format", "onnx"]):
        refused = psctl(service, "export", *args, cwd=tmp_path)
        assert refused.returncode != 0
    assert list(tmp_path.iterdir()) == []

    again = psctl(service, "cancel", LONG_ID)
    assert again.returncode == 0, again.stderr
    assert "had already finished (SUCCEEDED)" in " ".join(again.stdout.split())
