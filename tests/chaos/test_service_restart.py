"""Kill the service (and with it its embedded Ray) mid-job, then start it again: finished jobs
keep their records and results, the running job resumes from its checkpoint to its full budget,
and a job the store believed was running is started again."""

from __future__ import annotations

import json
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
from tests.conftest import wait_until
from tests.runtime.helpers import spec

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "restart-token"


def _serve(storage: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ps.cli", "serve", "--port", "0", "--storage", str(storage)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PS_TOKEN": TOKEN, "RAY_ADDRESS": ""},
    )
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"server did not start: {line}{proc.stderr.read()}")
    return proc, line.split("listening on ")[1].split()[0]


def test_the_service_is_killed_and_started_again(tmp_path):
    storage = tmp_path / "storage"
    proc, address = _serve(storage)
    try:
        client = Client(address, token=TOKEN)
        client.submit(spec(training={"workers": 1, "epochs": 1}), job_id="done-before")
        final = [e for e in client.watch("done-before")][-1].finished
        assert final.result.test_accuracy > 0.5
        result_before = final.result.result_json
        client.submit(
            spec(
                training={"workers": 2, "batch_size": 16, "epochs": 60},
                checkpoint={"every_steps": 40},
            ),
            job_id="interrupted",
        )
        wait_until(
            lambda: (storage / "interrupted" / "checkpoints" / "step-00000080").is_dir(),
            120,
            what="a checkpoint of the running job",
        )
        client.close()
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash, not a clean stop
        proc.wait(timeout=30)

    # A job the store believed was running when the service died (its Ray died with it).
    store = JobStore(storage / "jobs.db")
    store.create("orphan", parse_spec(spec(training={"workers": 1})), str(storage / "orphan"))
    store.transition("orphan", JobState.RUNNING)
    store.close()

    proc, address = _serve(storage)
    try:
        client = Client(address, token=TOKEN)
        jobs = {j.job_id: j for j in client.list()}
        assert jobs["done-before"].result.result_json == result_before
        assert (storage / "done-before" / "model.pt").is_file()

        final = [e for e in client.watch("interrupted")][-1].finished
        assert final.error == "", final.error
        result = json.loads(final.result.result_json)
        assert result["test_accuracy"] >= 0.9
        # The whole budget (60 epochs of 40 steps), for the reason a fault-free run stops.
        assert result["steps"] == result["total_steps"] == 60 * 40
        assert result["stop_reason"] == "epochs"
        assert final.attempts == 2
        events = [
            json.loads(line)
            for line in (storage / "interrupted" / "metrics.jsonl").read_text().splitlines()
        ]
        steps = [e["step"] for e in events if e["type"] == "evaluation"]
        assert steps == sorted(set(steps))  # resumed from the checkpoint, nothing evaluated twice

        # Its supervisor died with the old service: it is started again and runs to the end.
        orphan = [e for e in client.watch("orphan")][-1].finished
        assert orphan.error == "" and orphan.result.test_accuracy > 0.5
        assert orphan.attempts == 1
        assert {j.job_id for j in client.list()} >= {"done-before", "interrupted", "orphan"}
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
