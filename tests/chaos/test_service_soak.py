"""The service on a real `ray start` cluster, killed (SIGKILL) at chosen points and restarted each
time, and at last stopped gracefully (SIGTERM), while jobs submitted at once run and a watcher
follows each: every job succeeds exactly once with its whole step budget, nothing is left
behind, and every watcher sees its job's end.

The points where the service dies: mid-run; while a supervisor writes a checkpoint; while a
supervisor finishes its job (the final model); after a supervisor ended but before the service
recorded it; right after the service created a supervisor actor, before handing it its job.
Pause points (:mod:`ps.jobs.hooks`) hold the service or a supervisor inside each window. The
SIGTERM lands while a long job trains: it is handed back to the queue, checkpointed, and the
next start resumes it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest

from ps.client import Client
from ps.jobs.hooks import PAUSE_DIR_ENV
from ps.jobs.state import JobState
from ps.jobs.store import JobRecord, JobStore
from ps.v1 import training_pb2 as pb
from tests.conftest import free_port, wait_until
from tests.runtime.helpers import spec

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TOKEN = "soak-token"
JOBS = 4
EPOCHS = 12
LONG, LONG_EPOCHS = "soak-long", 100
LEFT_ON_CLUSTER = textwrap.dedent(
    """
    import json, sys, ray
    ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
    print(json.dumps([a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]))
    """
)


class Cluster:
    """A Ray head started with `ray start` (1 CPU: one job at a time) and the service on it,
    which the test kills and starts again; the pause directory is in every process's env."""

    def __init__(self, root: Path) -> None:
        self.root, self.pause = root, root / "pause"
        self.pause.mkdir()
        self.ray_port, self.port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "RAY_ADDRESS": "",
            "RAY_AUTH_MODE": "token",
            "PS_TOKEN": TOKEN,
            PAUSE_DIR_ENV: str(self.pause),
        }
        self.head: subprocess.Popen | None = None
        self.service: subprocess.Popen | None = None
        self.starts: list[float] = []  # seconds from each start of the service to listening

    def up(self) -> None:
        head = ["start", "--head", "--block", "--node-ip-address", "127.0.0.1"]
        head += ["--port", str(self.ray_port), "--num-cpus", "1", "--include-dashboard", "false"]
        head += ["--temp-dir", str(self.root / "ray"), "--disable-usage-stats"]
        self.head = subprocess.Popen(
            [str(VENV_BIN / "ray"), *head],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.serve()

    def serve(self) -> None:
        options = ["--port", str(self.port), "--metrics-port", "-1"]
        options += ["--ray-address", f"127.0.0.1:{self.ray_port}"]
        options += ["--storage", str(self.root / "storage")]
        log = (self.root / f"serve-{len(self.starts)}.log").open("w")
        t0 = time.monotonic()
        self.service = subprocess.Popen(
            [sys.executable, "-m", "ps.cli", "serve", *options],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        line = self.service.stdout.readline()  # `ray start` may still be coming up: it waits
        if "listening on" not in line:
            self.service.kill()
            pytest.fail(f"the service did not start: {line}{self.logs()}")
        self.starts.append(time.monotonic() - t0)

    def logs(self) -> str:
        return "".join(p.read_text()[-3000:] for p in sorted(self.root.glob("serve-*.log")))

    def kill_service(self) -> None:
        os.killpg(self.service.pid, signal.SIGKILL)
        self.service.wait(timeout=30)

    def hold(self, point: str) -> None:
        for suffix in ("reached", "go"):
            (self.pause / f"{point}.{suffix}").unlink(missing_ok=True)
        (self.pause / f"{point}.hold").touch()

    def reached(self, point: str, timeout: float = 180) -> None:
        try:
            wait_until(lambda: (self.pause / f"{point}.reached").exists(), timeout, 0.1, what=point)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the service's logs:\n{self.logs()}") from None
        (self.pause / f"{point}.hold").unlink()

    def release(self, point: str) -> None:
        (self.pause / f"{point}.go").touch()

    def jobs(self) -> dict[str, JobRecord]:
        store = JobStore(self.root / "storage" / "jobs.db")
        try:
            return {job.job_id: job for job in store.list()}
        finally:
            store.close()

    def running_at(self, step: int) -> str | None:
        """A job recorded RUNNING at ``step`` or later (None: none yet)."""
        for job in self.jobs().values():
            progress = job.progress
            if job.state == JobState.RUNNING and progress and step <= progress.step:
                return job.job_id
        return None

    def named_actors(self) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", LEFT_ON_CLUSTER, f"127.0.0.1:{self.ray_port}"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def down(self) -> None:
        if self.service is not None and self.service.poll() is None:
            os.killpg(self.service.pid, signal.SIGTERM)
            try:
                self.service.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.service.pid, signal.SIGKILL)
                self.service.wait(timeout=30)
        if self.head is not None and self.head.poll() is None:
            # Every Ray process of the head is in its session; SIGTERM makes `ray start
            # --block` wind down for ~30 s, SIGKILL of the group ends them all at once.
            os.killpg(self.head.pid, signal.SIGKILL)
            self.head.wait(timeout=30)


class Watcher(threading.Thread):
    """Follows one job over the service's outages: it watches, and after an error (the service
    is gone) watches again, until it has seen the job's end."""

    def __init__(self, address: str, job_id: str) -> None:
        super().__init__(name=f"watch-{job_id}", daemon=True)
        self.address, self.job_id = address, job_id
        self.errors: list[grpc.StatusCode] = []
        self.end = None

    def run(self) -> None:
        deadline = time.monotonic() + 600
        while self.end is None and time.monotonic() < deadline:
            try:
                with Client(self.address, token=TOKEN) as client:
                    for event in client.watch(self.job_id):
                        if event.HasField("finished"):
                            self.end = event.finished
            except grpc.RpcError as exc:
                self.errors.append(exc.code())
                time.sleep(0.2)  # a client's back-off while the service is down


def _submit(address: str, job_id: str, job: dict) -> None:
    """Submit, retrying through an outage; an id already taken means an earlier try landed."""
    while True:
        try:
            with Client(address, token=TOKEN) as client:
                client.submit(job, job_id=job_id)
            return
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                return
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            time.sleep(0.2)


@pytest.fixture
def cluster():
    # Ray's unix sockets live under the temp dir, and AF_UNIX paths are limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="pss-", dir="/tmp"))
    cluster = Cluster(root)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
        if not os.environ.get("PS_KEEP_SOAK"):
            shutil.rmtree(root, ignore_errors=True)


def test_jobs_survive_the_service_killed_at_every_point(cluster):
    ids = [f"soak-{i}" for i in range(JOBS)]
    epochs = {**dict.fromkeys(ids, EPOCHS), LONG: LONG_EPOCHS}
    job = spec(
        training={"workers": 1, "batch_size": 16, "epochs": EPOCHS},
        checkpoint={"every_steps": 60},
    )
    watchers = [Watcher(cluster.address, i) for i in ids]

    def submit_then_watch(watcher: Watcher) -> None:
        _submit(cluster.address, watcher.job_id, job)
        watcher.start()  # from the moment its job exists: NOT_FOUND before is no error

    submits = [threading.Thread(target=submit_then_watch, args=(w,)) for w in watchers]
    for thread in submits:
        thread.start()
    for thread in submits:
        thread.join()
    # Last in the queue, long enough to be caught training: only its hand-back checkpoints it.
    long_job = spec(
        training={"workers": 1, "batch_size": 16, "epochs": LONG_EPOCHS},
        checkpoint={"every_steps": 100_000},
    )
    _submit(cluster.address, LONG, long_job)
    watchers.append(Watcher(cluster.address, LONG))
    watchers[-1].start()
    recovered: dict[str, float] = {}

    def restart(point: str) -> None:
        t0 = time.monotonic()
        cluster.serve()
        recovered[point] = time.monotonic() - t0

    # Mid-run: the job's supervisor trains on; the restarted service re-attaches to it.
    wait_until(lambda: cluster.running_at(20), 180, 0.2, what="a job training")
    cluster.kill_service()
    restart("mid-run")
    # A supervisor writing a checkpoint.
    cluster.hold("checkpoint")
    cluster.reached("checkpoint")
    cluster.kill_service()
    restart("checkpoint")
    cluster.release("checkpoint")
    # A supervisor finishing its job (saving the final model).
    cluster.hold("final-model")
    cluster.reached("final-model")
    cluster.kill_service()
    restart("final-model")
    cluster.release("final-model")
    # The supervisor has ended; the service has not recorded it yet. And as the restarted
    # service starts the next job: its supervisor exists, but was never handed the job.
    cluster.hold("recording-end")
    cluster.reached("recording-end")
    cluster.kill_service()
    cluster.hold("supervisor-created")
    restart("recording-end")
    cluster.reached("supervisor-created")
    cluster.kill_service()
    restart("supervisor-created")
    # Stopped gracefully (SIGTERM) while the long job trains: it checkpoints where it is and
    # goes back to the queue; the next start resumes it from that checkpoint.
    wait_until(lambda: cluster.running_at(100) == LONG, 300, 0.2, what="the long job training")
    t0 = time.monotonic()
    cluster.service.send_signal(signal.SIGTERM)
    assert cluster.service.wait(timeout=120) == 0, cluster.logs()
    recovered["hand-back (SIGTERM to exit)"] = time.monotonic() - t0
    handed_back = cluster.jobs()[LONG]
    assert (handed_back.state, handed_back.handbacks) == (JobState.QUEUED, 1), handed_back
    assert handed_back.resume, handed_back
    assert len(list((cluster.root / "storage" / LONG / "checkpoints").glob("step-*"))) == 1
    restart("stopped")
    for watcher in watchers:
        watcher.join(timeout=600)
    jobs = cluster.jobs()
    assert sorted(jobs) == sorted(epochs)  # none lost, none duplicated
    for job_id, record in jobs.items():
        assert record.state == JobState.SUCCEEDED, (job_id, record.error, cluster.logs())
        result = record.result
        assert result.steps == result.total_steps > 0 and result.stop_reason == "epochs"
        assert result.epochs == pytest.approx(epochs[job_id])
        # One attempt ran to the end; every other was ended by the service, not the job.
        assert record.attempts - record.handbacks == 1, record
        history = (cluster.root / "storage" / job_id / "metrics.jsonl").read_text().splitlines()
        evaluated = [json.loads(line)["step"] for line in history if '"evaluation"' in line]
        assert evaluated == sorted(set(evaluated)), evaluated  # resumed, never run twice
    assert jobs[LONG].handbacks >= 1
    for watcher in watchers:
        assert watcher.end is not None, watcher.job_id
        assert watcher.end.state == pb.JOB_STATE_SUCCEEDED, watcher.end
        assert set(watcher.errors) <= {grpc.StatusCode.UNAVAILABLE}, watcher.errors
    # Nothing left behind: no actor of any job, no shared-memory buffer.
    assert [n for n in cluster.named_actors() if n.startswith("ps:")] == []
    assert [p.name for p in Path("/dev/shm").glob("ps-soak-*")] == []
    timings = {point: round(seconds, 1) for point, seconds in recovered.items()}
    print(f"service starts (s): {[round(s, 1) for s in cluster.starts]}; after each: {timings}")
