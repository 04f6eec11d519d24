"""The user's own module over gRPC: its code travels in the request, runs only in the job's
actors, and only on a service started with --allow-user-code."""

from __future__ import annotations

import textwrap

import grpc
import pytest
import torch

from ps.api.convert import spec_to_proto, state_from_proto
from ps.spec import parse_spec
from ps.v1 import training_pb2 as pb
from tests.runtime.helpers import spec
from tests.service.conftest import TOKEN, start_service

AUTH = (("authorization", f"Bearer {TOKEN}"),)
NETS = textwrap.dedent(
    """
    import os
    from torch import nn

    SERVICE_PID = int(os.environ.get("PS_TEST_SERVICE_PID", "0"))

    def build(width=16):
        # Never in the service's own process.
        assert os.getpid() != SERVICE_PID, "user code ran in the service process"
        return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    """
)


@pytest.fixture
def user_spec(tmp_path, monkeypatch):
    pkg = tmp_path / "code" / "mynets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NETS)
    job = spec(training={"workers": 1, "epochs": 2})
    job["model"] = {"module": "mynets.nets:build", "kwargs": {"width": 24}, "code": "code"}
    monkeypatch.chdir(tmp_path)  # model.code is relative to the current directory
    return job


def test_a_user_module_trains_on_a_service_that_allows_user_code(
    ray_runtime, tmp_path_factory, user_spec, monkeypatch
):
    import os

    monkeypatch.setenv("PS_TEST_SERVICE_PID", str(os.getpid()))
    with start_service(tmp_path_factory.mktemp("allowing"), allow_user_code=True) as svc:
        client = svc.client()
        client.submit(user_spec, job_id="own-module")
        final = [e for e in client.watch("own-module")][-1].finished
        assert state_from_proto(final.state).value == "SUCCEEDED", final.error
        assert final.result.steps == final.result.total_steps
        assert (svc.storage / "own-module" / "code" / "mynets" / "nets.py").is_file()
        program = torch.export.load(
            client.export("own-module", tmp_path_factory.mktemp("x") / "m.pt2", "pt2")
        )
        assert program.module()(torch.zeros(3, 64)).shape == (3, 10)


def test_a_service_without_the_flag_refuses_user_code_and_creates_nothing(service, user_spec):
    client = service.client()
    with pytest.raises(grpc.RpcError) as info:
        client.submit(user_spec, job_id="refused-code")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "--allow-user-code" in info.value.details()
    with pytest.raises(grpc.RpcError) as lookup:
        client.get("refused-code")
    assert lookup.value.code() == grpc.StatusCode.NOT_FOUND
    assert not (service.storage / "refused-code").exists()
    # A loss function is user code too, even with a layer spec (and without any archive).
    message = spec_to_proto(parse_spec(spec()))
    message.model.loss_fn = "mynets.nets:loss"
    with pytest.raises(grpc.RpcError) as info:
        client.stub.SubmitJob(pb.SubmitJobRequest(spec=message), metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_hostile_code_archive_is_refused(ray_runtime, tmp_path_factory):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escape.py", "print('out')")
    message = spec_to_proto(parse_spec(spec()))
    message.model.layers.pop()  # a user module instead of layers
    del message.model.layers[:]
    message.model.module = "escape:build"
    root = tmp_path_factory.mktemp("hostile")
    with start_service(root, allow_user_code=True) as svc:
        request = pb.SubmitJobRequest(spec=message, code_archive=buffer.getvalue())
        with pytest.raises(grpc.RpcError) as info:
            svc.client().stub.SubmitJob(request, metadata=AUTH)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith("model.code")
        assert not (root / "escape.py").exists() and not (root.parent / "escape.py").exists()
        request = pb.SubmitJobRequest(spec=message, code_archive=b"not a zip at all")
        with pytest.raises(grpc.RpcError) as info:
            svc.client().stub.SubmitJob(request, metadata=AUTH)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
