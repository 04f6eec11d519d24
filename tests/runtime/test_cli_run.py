"""`psctl run` as a user runs it: its output directory is never replaced unasked, and Ctrl-C
says where the job stopped and how to continue it, which `--resume` then does to the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from ps.protocol import shm
from ps.server.checkpoint import checkpoint_step, list_checkpoints
from tests.conftest import wait_until
from tests.runtime.helpers import spec

EPOCHS = 16


def psctl(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", "RAY_ADDRESS": ""}
    return subprocess.run(
        [sys.executable, "-m", "ps.cli", *args], env=env, capture_output=True, text=True, **kw
    )


def said(proc: subprocess.CompletedProcess) -> str:
    """What it printed, as one line (the console wraps at 80 columns)."""
    return " ".join((proc.stdout + proc.stderr).split())


def _checkpoint_at(out: Path, step: int) -> bool:
    # Complete checkpoints only: one being written is a `step-N.incomplete` directory.
    return any(checkpoint_step(p) >= step for p in list_checkpoints(out / "checkpoints"))


def _spec_file(tmp_path: Path) -> Path:
    job = spec(training={"workers": 1, "batch_size": 16, "epochs": EPOCHS})
    job["checkpoint"] = {"every_steps": 50}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_an_earlier_run_is_never_replaced_unasked(tmp_path):
    job, out = _spec_file(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "spec.yaml").write_text("earlier")
    refused = psctl("run", str(job), "-o", str(out), timeout=60)
    assert refused.returncode == 2 and "holds an earlier run" in said(refused)
    assert "--overwrite" in said(refused) and "--resume" in said(refused)
    nothing = psctl("run", str(job), "-o", str(out), "--resume", timeout=60)
    assert nothing.returncode == 2 and "holds no checkpoint" in said(nothing)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_text("not a run")
    kept = psctl("run", str(job), "-o", str(other), "--overwrite", timeout=60)
    assert kept.returncode == 2 and "not a run directory" in said(kept)
    assert (out / "spec.yaml").read_text() == "earlier" and (other / "cat.jpg").exists()


def test_ctrl_c_says_how_to_continue_and_resume_finishes_the_job(tmp_path):
    job, out = _spec_file(tmp_path), tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ps.cli", "run", str(job), "-o", str(out), "-q"],
        env={**os.environ, "COLUMNS": "80", "RAY_ADDRESS": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Past the first evaluation (step 79), so that the run has heard of a step.
        wait_until(lambda: _checkpoint_at(out, 150), 120, 0.1, what="a checkpoint")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, (stdout, stderr)
    printed = " ".join((stdout + stderr).split())
    assert "interrupted at step" in printed and "last checkpoint" in printed, printed
    assert f"psctl run {job} --output {out} --resume" in printed
    # Its workers' buffers went with it (the job id is in its history; other tests' jobs may
    # hold buffers of their own meanwhile).
    job_id = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["job_id"]
    assert shm.existing(shm.prefix(job_id)) == []

    resumed = psctl("run", str(job), "-o", str(out), "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    # Not a terminal: plain progress lines (one per evaluation), nothing cut short.
    lines = [line for line in resumed.stderr.splitlines() if line.startswith("step ")]
    assert lines and all("epoch" in line and "…" not in line for line in lines), resumed.stderr
    assert "Token authentication" not in resumed.stderr  # Ray's notice, not ours to show
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == result["total_steps"] and result["stop_reason"] == "epochs"
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluated = [e["step"] for e in history if e["type"] == "evaluation"]
    assert evaluated == sorted(set(evaluated)) and len(evaluated) == EPOCHS
