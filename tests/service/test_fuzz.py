"""Hostile input over the real gRPC server: no INTERNAL, a refusal creates nothing, the server
stays SERVING, and a valid job afterwards still succeeds.

Valid specs are mutated field by field (every scalar field of the proto ``JobSpec``: non-finite
and huge floats, out-of-range integers, empty, huge and NUL-bearing strings, unknown enum names,
hostile paths), and every method gets bytes that do not decode.
"""

from __future__ import annotations

import copy
import math
import os

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ps.api.convert import spec_to_proto, state_from_proto
from ps.errors import SpecError
from ps.jobs.admission import admit
from ps.jobs.usercode import UserCodeNotAllowed
from ps.spec import parse_spec
from ps.v1 import training_pb2 as pb
from tests.conftest import wait_until
from tests.runtime.helpers import spec
from tests.service.conftest import TOKEN, start_service

AUTH = (("authorization", f"Bearer {TOKEN}"),)
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
HOLDER = {"workers": 2, "worker_resources": {"num_cpus": 2}, "epochs": 100_000}  # all 4 CPUs


def _leaves(descriptor, prefix=()):
    """Every scalar field path of a message, with its proto type and whether it repeats."""
    for f in descriptor.fields:
        path = (*prefix, f.name)
        if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.full_name == STRUCT:
            yield path, STRUCT, False
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            yield from _leaves(f.message_type, path)
        else:
            yield path, f.type, f.is_repeated


STRUCT = "google.protobuf.Struct"  # free-form JSON (model.kwargs): a leaf here
LEAVES = list(_leaves(pb.JobSpec.DESCRIPTOR))
FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 3.5e38, 0.0, -1.0, -0.0, 1e-320, 7.0]
INTS = [0, 1, 2, 3, 10**6, 2**31 - 1, 2**32 - 1]
STRINGS = [
    "",
    "x" * 100_000,
    "a\x00b",
    "../../etc/passwd",
    "/dev/zero",
    "file:///etc/hosts",
    "/proc/self/root/etc/passwd.npz",
    "n" * 300 + ".npz",
    "digits",
    "synthetic-classification",
    "synthetic-regression",
    "relu",
    "zeros",
    "uniform",
    "dropout",
    "dense",
    "conv3d",
    "cosine",
    "ssp",
    "topk",
    "adamw",
    "\u202e\ufffd",
]


def _value(kind: int | str, repeated: bool):
    if kind == STRUCT:
        scalars = st.sampled_from([*INTS, 1.5, "x" * 1000, True, None])
        return st.dictionaries(st.text(max_size=8), scalars | st.lists(scalars, max_size=3))
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        one = st.sampled_from(FLOATS) | st.floats(allow_nan=True, allow_infinity=True)
    elif kind == FieldDescriptor.TYPE_UINT64:
        one = st.sampled_from([*INTS, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)
    elif kind == FieldDescriptor.TYPE_UINT32:
        one = st.sampled_from(INTS) | st.integers(0, 2**32 - 1)
    elif kind == FieldDescriptor.TYPE_BOOL:
        one = st.booleans()
    else:
        one = st.sampled_from(STRINGS) | st.text(max_size=40)
    if repeated:
        return st.lists(one, max_size=4) | st.just([0.5] * 300_000)
    return one


def _as_proto(data) -> pb.JobSpec:
    return json_format.ParseDict(_json_floats(_named_to_messages(data)), pb.JobSpec())


def _named_to_messages(value):
    """A bare activation or initializer name ("relu") as the message it stands for."""
    if isinstance(value, dict):
        return {
            k: {"type": v}
            if k in ("activation", "init", "bias_init") and isinstance(v, str)
            else _named_to_messages(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_named_to_messages(v) for v in value]
    return value


def _json_floats(value):
    """Non-finite floats in the spelling protobuf's JSON mapping takes ("NaN", "Infinity")."""
    if isinstance(value, dict):
        return {k: _json_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_floats(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


# A small valid job with every field spelled out, as the proto's plain data.
BASE = json_format.MessageToDict(
    spec_to_proto(parse_spec(spec(training={"workers": 1, "epochs": 1}))),
    preserving_proto_field_name=True,
)


@st.composite
def mutated_specs(draw):
    """A valid spec (as plain data) with one field set to a hostile value; returns the key path
    (layer indexes included) and the spec."""
    base = copy.deepcopy(BASE)
    path, kind, repeated = draw(st.sampled_from(LEAVES))
    value = draw(_value(kind, repeated))
    target, keys = base, []
    for key in path[:-1]:
        if key == "layers":
            layers = target.setdefault("layers", [])
            if not (layers and draw(st.booleans())):
                layers.append({"type": "dense"})
            index = draw(st.integers(0, len(layers) - 1))
            target, keys = layers[index], [*keys, "layers", index]
            continue
        child = target.get(key)
        if not isinstance(child, dict):  # a bare name ("relu") stands for {"type": name}
            child = target[key] = {} if child is None else {"type": child}
        target, keys = child, [*keys, key]
    target[path[-1]] = value
    return (*keys, path[-1]), base


@pytest.fixture(scope="module")
def busy_service(ray_runtime, tmp_path_factory):
    """A service whose cluster is full: jobs a fuzz case gets accepted stay QUEUED."""
    with start_service(tmp_path_factory.mktemp("fuzz"), max_queue=10_000) as svc:
        client = svc.client()
        client.submit(spec(training=HOLDER), job_id="holder")
        wait_until(
            lambda: state_from_proto(client.get("holder").state).value == "RUNNING",
            60,
            what="the holder job to run",
        )
        yield svc
        client.cancel("holder")


def _serving(svc) -> bool:
    channel = grpc.insecure_channel(svc.address)
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    channel.close()
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@settings(
    max_examples=int(os.environ.get("PS_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=mutated_specs(), n=st.integers(0, 10**9))
def test_mutated_specs_over_grpc(busy_service, case, n):
    keys, data = case
    field = ".".join(map(str, keys))
    stub = busy_service.client().stub
    job_id = f"fuzz-{n}"
    try:
        message = _as_proto(data)
    except (json_format.ParseError, ValueError, TypeError, OverflowError):
        return  # not representable as a JobSpec message at all: nothing to send
    try:
        stub.SubmitJob(pb.SubmitJobRequest(spec=message, job_id=job_id), metadata=AUTH, timeout=60)
    except grpc.RpcError as exc:
        assert exc.code() not in NEVER, f"{field}: {exc.code()} {exc.details()[:300]}"
        assert len(exc.details()) < 10_000
        with pytest.raises(grpc.RpcError) as lookup:  # a refusal creates nothing ...
            stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=AUTH, timeout=30)
        assert lookup.value.code() == grpc.StatusCode.NOT_FOUND
        assert not (busy_service.storage / job_id).exists()  # ... no record, no file
        return
    # Accepted: it waits behind the holder; take it away again.
    stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=AUTH, timeout=60)
    stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id), metadata=AUTH, timeout=60)


GARBAGE = {
    "random bytes": bytes(range(256)) * 3,
    "wrong wire type": b"\x0a\x05\x08\x01\x10\x02\x18",
    "invalid utf-8": b"\x0a\x03\xff\xfe\xfd",
    "nested groups": b"\x0b" * 5000 + b"\x0c" * 5000,
    "truncated": b"\x0a\xff\xff\xff\x0f",
    "end group without start": b"\x0c",
}


def _decodes(message_class, data: bytes) -> bool:
    try:
        message_class.FromString(data)
        return True
    except Exception:  # noqa: BLE001 - whatever the protobuf runtime raises
        return False


@pytest.mark.parametrize("payload", list(GARBAGE), ids=list(GARBAGE))
def test_undecodable_requests_are_invalid_argument_on_every_method(busy_service, payload):
    """Bytes that are no message of the method are INVALID_ARGUMENT; bytes that happen to be one
    get an ordinary answer; never INTERNAL."""
    from google.protobuf import message_factory

    channel = grpc.insecure_channel(busy_service.address)
    service = pb.DESCRIPTOR.services_by_name["TrainingService"]
    refused = 0
    for method in service.methods:
        path = f"/{service.full_name}/{method.name}"
        streams = method.server_streaming
        call = (channel.unary_stream if streams else channel.unary_unary)(path)
        request_class = message_factory.GetMessageClass(method.input_type)
        try:
            reply = call(GARBAGE[payload], metadata=AUTH, timeout=30)
            if streams:
                list(reply)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
        if _decodes(request_class, GARBAGE[payload]):
            assert code not in NEVER, (method.name, code)
        else:
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.name, code)
            refused += 1
    channel.close()
    assert _serving(busy_service)
    if payload != "wrong wire type":
        assert refused == len(service.methods)  # these are no message of any method


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListJobsRequest(states=[99]), "states"),
        (pb.ListJobsRequest(states=[-1]), "states"),
        (pb.ListJobsRequest(states=[pb.JOB_STATE_UNSPECIFIED]), "states"),
        (pb.ListJobsRequest(page_token=str(10**23)), "page_token"),
        (pb.ListJobsRequest(page_token="-5"), "page_token"),
    ],
)
def test_bad_list_requests_name_the_field(busy_service, request_, field):
    with pytest.raises(grpc.RpcError) as info:
        busy_service.client().stub.ListJobs(request_, metadata=AUTH, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field)


def test_huge_inputs_are_echoed_clipped(busy_service):
    stub = busy_service.client().stub
    for job_id in ("x" * 100_000, "é" * 50_000):
        with pytest.raises(grpc.RpcError) as info:
            stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=AUTH, timeout=30)
        assert info.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        assert len(info.value.details()) < 1000
    message = spec_to_proto(parse_spec(spec()))
    message.data.source = "y" * 1_000_000
    with pytest.raises(grpc.RpcError) as info:
        stub.SubmitJob(pb.SubmitJobRequest(spec=message), metadata=AUTH, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("data.source") and len(info.value.details()) < 1000


# -- the same mutations, and wrong types, through the Python path (psctl run, the client) ----
ANY = (
    st.sampled_from(FLOATS + INTS + STRINGS[:12])
    | st.none()
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
    | st.booleans()
)


@st.composite
def retyped_specs(draw):
    keys, data = draw(mutated_specs())
    target = data
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = draw(ANY)
    return keys, data


@settings(max_examples=300, deadline=None)
@given(case=mutated_specs() | retyped_specs())
def test_mutated_specs_fail_with_a_spec_error_or_pass_admission(case):
    keys, data = case
    try:
        admit(parse_spec(data), allow_user_code=False)
    except UserCodeNotAllowed:
        pass
    except SpecError as exc:
        assert exc.path, f"{keys}: {exc}"
        assert len(str(exc)) < 2000


def _named_cases():
    big = [{"type": "dense", "units": 10**6}, {"type": "dense", "units": 10**6}]
    return {
        "model too large": (
            {"model": {"layers": [*big, {"type": "dense", "units": 10}]}},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["model.layers", "1,000,076,000,010 parameters", "ps.max_params = 100,000,000"],
        ),
        "memory beyond the cluster": (
            {
                "model": {
                    "layers": [
                        big[0],
                        {"type": "dense", "units": 5000},
                        {"type": "dense", "units": 10},
                    ]
                },
                "ps": {"max_params": 10**10},
            },
            grpc.StatusCode.FAILED_PRECONDITION,
            ["GiB of memory", "the Ray cluster has"],
        ),
        "synthetic data too large": (
            {
                "data": {
                    "source": "synthetic-classification",
                    "n_samples": 10**7,
                    "n_features": 10**3,
                }
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            ["data.n_samples", "synthetic-data budget of 100,000,000 values"],
        ),
        "one feature": (
            {"data": {"source": "synthetic-classification", "n_features": 1}},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["data.n_features"],
        ),
        "too many classes": (
            {"data": {"source": "synthetic-classification", "n_features": 5, "n_classes": 10}},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["data.n_classes", "at most 4 classes"],
        ),
        "infinite noise": (
            {"data": {"source": "synthetic-regression", "noise": math.inf}},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["data.noise", "finite"],
        ),
        "infinite init bound": (
            {
                "model": {
                    "layers": [
                        {
                            "type": "dense",
                            "units": 10,
                            "init": {"type": "uniform", "low": -math.inf},
                        }
                    ]
                }
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            ["model.layers.0.init.low"],
        ),
        "NaN init mean": (
            {"model": {"layers": [{"type": "dense", "units": 10, "init": {"mean": math.nan}}]}},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["model.layers.0.init.mean"],
        ),
        "name too long": (
            {"data": {"source": "d" * 300 + ".npz"}},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["data.source", "unusable path"],
        ),
        "NUL byte": (
            {"model": {"layers": [{"type": "dense", "units": 10}], "init_from": "m\x00.pt"}},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["model.init_from", "NUL"],
        ),
    }


NAMED = _named_cases()


@pytest.mark.parametrize("case", list(NAMED), ids=list(NAMED))
def test_named_refusals_say_why_and_create_nothing(busy_service, case):
    overrides, code, texts = NAMED[case]
    data = spec(**overrides)
    data["model"].setdefault("layers", spec()["model"]["layers"])
    stub = busy_service.client().stub
    job_id = f"named-{len(case)}"
    with pytest.raises(grpc.RpcError) as info:
        stub.SubmitJob(
            pb.SubmitJobRequest(spec=_as_proto(data), job_id=job_id),
            metadata=AUTH,
            timeout=60,
        )
    assert info.value.code() == code, info.value.details()
    for text in texts:
        assert text in info.value.details(), info.value.details()
    with pytest.raises(grpc.RpcError) as lookup:
        stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=AUTH, timeout=30)
    assert lookup.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04 not a zip"], ids=str)
def test_a_warm_start_file_that_is_no_model_is_invalid_argument(busy_service, content):
    (busy_service.data_root / "bad.pt").write_bytes(content)
    data = spec(model={"init_from": "bad.pt"})
    with pytest.raises(grpc.RpcError) as info:
        busy_service.client().stub.SubmitJob(
            pb.SubmitJobRequest(spec=_as_proto(data)), metadata=AUTH, timeout=60
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("model.init_from")


def test_after_the_fuzzing_the_server_serves_and_a_valid_job_succeeds(busy_service):
    client = busy_service.client()
    assert _serving(busy_service)
    assert [j.job_id for j in client.list()] == ["holder"]  # nothing refused was created
    client.cancel("holder")
    client.submit(spec(training={"workers": 1, "epochs": 2}), job_id="after-fuzz")
    final = [e for e in client.watch("after-fuzz")][-1].finished
    assert state_from_proto(final.state).value == "SUCCEEDED", final.error
    assert final.result.steps == final.result.total_steps
