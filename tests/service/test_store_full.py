"""The job store on a full disk (a real tmpfs): a refused SubmitJob is UNAVAILABLE and creates
nothing, health reports NOT_SERVING while the store refuses writes, and a job that was already
submitted ends SUCCEEDED with its full step budget once space returns."""

from __future__ import annotations

import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ps.client import Client
from ps.service import ServiceConfig, run_service
from ps.v1 import training_pb2 as pb
from tests.conftest import wait_until
from tests.runtime.helpers import spec
from tests.service.conftest import TOKEN


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk) -> None:
    with (disk / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="ps.v1.TrainingService")
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def test_a_full_store_refuses_submissions_and_running_jobs_still_succeed(
    ray_runtime, small_disk, tmp_path
):
    config = ServiceConfig(
        storage=tmp_path / "runs",
        host="127.0.0.1",
        port=0,
        metrics_port=-1,
        db=small_disk / "jobs.db",
        data_root=tmp_path / "data",
        token=TOKEN,
    )
    with run_service(config) as running:
        client = Client(running.address, token=TOKEN)
        client.submit(spec(training={"epochs": 100, "max_steps": 300}), job_id="before")
        _fill(small_disk)
        with pytest.raises(grpc.RpcError) as refused:
            client.submit(spec(), job_id="refused")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "refuses writes" in refused.value.details()
        wait_until(
            lambda: _health(running.address) == health_pb2.HealthCheckResponse.NOT_SERVING,
            30,
            what="health to say NOT_SERVING",
        )
        (small_disk / "filler").unlink()  # space returns
        with pytest.raises(grpc.RpcError) as missing:
            client.get("refused")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # the refusal created nothing
        ended = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
        final = wait_until(
            lambda: (j := client.get("before")).state in ended and j, 240, what="the job's end"
        )
        assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
        assert final.result.steps == final.result.total_steps == 300
        wait_until(
            lambda: _health(running.address) == health_pb2.HealthCheckResponse.SERVING,
            30,
            what="health to say SERVING again",
        )
        assert client.submit(spec(training={"epochs": 1}), job_id="after").job_id == "after"
