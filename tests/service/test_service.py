"""The service over real gRPC: submit, watch, export, status codes, queueing, cancel, auth."""

from __future__ import annotations

import functools
import json
import re

import grpc
import pytest
import ray
import torch

from ps.api.convert import spec_to_proto, state_from_proto
from ps.errors import SpecError
from ps.jobs.runner import run_job
from ps.protocol import shm
from ps.spec import parse_spec
from ps.v1 import training_pb2 as pb
from tests.conftest import wait_until
from tests.runtime.helpers import spec
from tests.service.conftest import TOKEN, start_service
from workers.data import load_dataset
from workers.models import load_model

AUTH = (("authorization", f"Bearer {TOKEN}"),)


def state(job) -> str:
    return state_from_proto(job.state).value


def job_actor_names(job_id: str) -> set[str]:
    return {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if f":{job_id}:" in a["name"]
    }


def test_submit_watch_export_load(service, tmp_path):
    client = service.client()
    job = client.submit(spec(name="digits", training={"epochs": 6}), job_id="e2e")
    assert job.job_id == "e2e" and state(job) in ("QUEUED", "STARTING", "RUNNING")
    kinds, states = [], []
    for event in client.watch("e2e"):
        kinds.append(event.WhichOneof("event"))
        if kinds[-1] == "state":
            states.append(state_from_proto(event.state).value)
        if kinds[-1] == "finished":
            finished = event.finished
    assert kinds[-1] == "finished" and state(finished) == "SUCCEEDED"
    assert "evaluation" in kinds and "RUNNING" in states
    assert (
        finished.result.test_accuracy >= 0.9
        and finished.result.steps == finished.progress.total_steps
    )
    # A refused export writes nothing, not even its temporary file.
    for job_id, fmt, code in (
        ("missing", "pt", grpc.StatusCode.NOT_FOUND),
        ("e2e", "onnx", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        refused = functools.partial(client.export, job_id, tmp_path / "refused.pt", fmt)
        assert _code(refused)[0] == code
    assert list(tmp_path.iterdir()) == []
    path = client.export("e2e", tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    model = load_model(path)
    data = load_dataset(parse_spec(spec()).data, "cross_entropy", 0)
    raw = torch.from_numpy(data.x_test * data.scale + data.shift)  # the model takes raw features
    accuracy = (model.predict(raw).numpy() == data.y_test).mean()
    assert accuracy == pytest.approx(finished.result.test_accuracy, abs=1e-6)
    assert state(client.get("e2e")) == "SUCCEEDED"
    assert "e2e" in [j.job_id for j in client.list(["SUCCEEDED"])]


def _raw_submit(service, spec_msg, job_id=""):
    stub = service.client().stub
    return stub.SubmitJob(
        pb.SubmitJobRequest(spec=spec_msg, job_id=job_id), metadata=AUTH, timeout=60
    )


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_status_codes(service):
    client = service.client()
    bad = spec_to_proto(parse_spec(spec()))
    bad.training.mode = "bsp"
    code, details = _code(lambda: _raw_submit(service, bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("training.mode:")
    code, details = _code(lambda: client.get("no-such-job"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = _code(lambda: client.submit(spec(training={"workers": 64})))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "64 CPU" in details
    code, details = _code(lambda: client.submit(spec(data={"source": "../../etc/data.npz"})))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "outside the data root" in details
    missing = spec(data={"source": "good.csv", "target": "label"})
    code, details = _code(lambda: client.submit(missing))
    root = service.data_root.resolve()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "file not found: 'good.csv'" in details
    assert f"looked for {root / 'good.csv'}" in details and "--data-root" in details
    code, details = _code(lambda: client.submit(spec(), job_id="bad id!"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("job_id:")


def test_the_service_refuses_the_data_psctl_run_refuses_and_creates_nothing(service, tmp_path):
    client = service.client()
    service.data_root.mkdir(parents=True, exist_ok=True)
    files = {
        "nan.csv": (
            "a,b,label\n1,2,0\nnan,4,1\n5,6,0\n",
            "infinite values (first: row 2, column 'a' = nan)",
        ),
        "empty.csv": ("a,b,label\n", "empty.csv has a header but no data rows"),
    }
    before = [j.job_id for j in client.list()]
    for name, (text, message) in files.items():
        (service.data_root / name).write_text(text)
        (tmp_path / name).write_text(text)
        job = spec(data={"source": name, "target": "label"})
        submit = functools.partial(client.submit, job, job_id=f"refused-{name[:-4]}")
        code, details = _code(submit)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details, details
        with pytest.raises(SpecError, match=re.escape(message)):  # psctl run: the same refusal
            local = spec(data={"source": str(tmp_path / name), "target": "label"})
            run_job(parse_spec(local), tmp_path / "out")
    assert [j.job_id for j in client.list()] == before  # no record
    assert not any(p.name.startswith("refused-") for p in service.storage.glob("*"))


def test_duplicate_submit_is_refused_and_changes_nothing(service):
    client = service.client()
    first = client.submit(spec(training={"epochs": 1}), job_id="dup")
    code, details = _code(lambda: client.submit(spec(training={"epochs": 9}), job_id="dup"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert client.get("dup").spec.training.epochs == first.spec.training.epochs == 1
    wait_until(lambda: state(client.get("dup")) == "SUCCEEDED", 120, what="dup to succeed")
    code, _ = _code(lambda: client.submit(spec(), job_id="dup"))
    assert code == grpc.StatusCode.ALREADY_EXISTS


BIG = {
    "workers": 2,
    "worker_resources": {"num_cpus": 2},
    "epochs": 40,
}  # all 4 CPUs of the test Ray


def test_queueing_and_cancel(service, tmp_path):
    client = service.client()
    client.submit(spec(training=BIG), job_id="holder")
    wait_until(lambda: state(client.get("holder")) == "RUNNING", 60, what="holder running")
    client.submit(spec(training={"workers": 1, "epochs": 1}), job_id="waiter")
    client.submit(spec(training={"workers": 1, "epochs": 1}), job_id="queued-cancel")
    assert state(client.get("waiter")) == "QUEUED"
    never = tmp_path / "never.pt"
    code, details = _code(lambda: client.export("waiter", never))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert list(tmp_path.iterdir()) == []  # no file, no .part
    code, _ = _code(lambda: client.delete("waiter"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION

    cancelled = client.cancel("queued-cancel")
    assert state(cancelled) == "CANCELLED"
    assert state(client.get("waiter")) == "QUEUED"  # still waiting behind the holder

    wait_until(lambda: job_actor_names("holder"), 30, what="holder's actors")
    done = client.cancel("holder")
    assert state(done) == "CANCELLED"
    wait_until(lambda: not job_actor_names("holder"), 30, what="holder's actors to be gone")
    assert shm.existing(shm.prefix("holder")) == []  # nor its shared-memory buffers

    wait_until(
        lambda: state(client.get("waiter")) == "SUCCEEDED",
        120,
        what="waiter to run after the holder",
    )
    assert client.get("waiter").started_at >= client.get("holder").finished_at
    client.delete("waiter")
    assert _code(lambda: client.get("waiter"))[0] == grpc.StatusCode.NOT_FOUND


def test_full_queue_is_resource_exhausted(ray_runtime, tmp_path):
    with start_service(tmp_path, max_queue=1) as svc:
        client = svc.client()
        client.submit(spec(training=BIG), job_id="hold")
        wait_until(lambda: state(client.get("hold")) == "RUNNING", 60, what="hold running")
        client.submit(spec(training={"workers": 1}), job_id="q1")
        code, details = _code(lambda: client.submit(spec(training={"workers": 1}), job_id="q2"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue" in details
        for job_id in ("q1", "hold"):
            assert state(client.cancel(job_id)) == "CANCELLED"


def test_auth(service):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for token, reason in ((None, "missing"), ("wrong", "invalid")):
        code, details = _code(lambda t=token: service.client(token=t).get("x"))
        assert code == grpc.StatusCode.UNAUTHENTICATED and reason in details
        with pytest.raises(grpc.RpcError) as info:
            list(service.client(token=token).watch("x"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: service.client().get("x"))[0] == grpc.StatusCode.NOT_FOUND  # authenticated
    channel = grpc.insecure_channel(service.address)
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="ps.v1.TrainingService")
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_refuses_non_loopback_without_token(ray_runtime, tmp_path):
    from ps.api.server import InsecureBind, ServerConfig, run_server

    server = run_server(ServerConfig(host="0.0.0.0", port=0), manager=None)
    with pytest.raises(InsecureBind, match="without a token"):
        server.__enter__()


def test_an_ensemble_runs_over_the_service_with_its_members_labelled(service, tmp_path):
    client = service.client()
    job = spec(training={"workers": 1, "epochs": 3, "worker_resources": {"num_cpus": 0.5}})
    job["ensemble"] = {"members": 2, "combine": "mean"}
    client.submit(job, job_id="bagged")
    members, finished = set(), None
    for event in client.watch("bagged"):
        if event.WhichOneof("event") == "evaluation":
            members.add(event.member)
        if event.WhichOneof("event") == "finished":
            finished = event.finished
    assert state(finished) == "SUCCEEDED" and members == {0, 1}
    result = json.loads(finished.result.result_json)
    assert len(result["members"]) == 2 and finished.result.steps == sum(
        m["steps"] for m in result["members"]
    )
    model = load_model(client.export("bagged", tmp_path / "model.pt"))
    assert len(model.net.members) == 2
