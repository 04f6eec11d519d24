"""The spec is parsed once on the job path, and SubmitJob never reads a whole data file."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from ps.api.convert import spec_to_proto, state_from_proto
from ps.spec import JobSpec, parse_spec
from ps.v1 import training_pb2 as pb
from tests.runtime.helpers import spec
from tests.service.conftest import TOKEN

AUTH = (("authorization", f"Bearer {TOKEN}"),)


def test_actors_never_parse_a_spec(ray_runtime):
    """The session's Ray workers refuse to parse specs (tests/hooks.py): every job that
    succeeds in this session ran without parsing one in its supervisor, workers or shards."""

    @ray.remote(num_cpus=0)
    def parse():
        return parse_spec(spec())

    with pytest.raises(ray.exceptions.RayTaskError, match="specs travel parsed"):
        ray.get(parse.remote())


def test_the_service_parses_a_submitted_spec_once(service, monkeypatch):
    message = spec_to_proto(parse_spec(spec(training={"workers": 1, "epochs": 2})))
    calls = []
    original = JobSpec.model_validate.__func__

    def counting(cls, *args, **kwargs):
        calls.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(JobSpec, "model_validate", classmethod(counting))
    stub = service.client().stub
    stub.SubmitJob(pb.SubmitJobRequest(spec=message, job_id="parsed-once"), metadata=AUTH)
    for reply in stub.WatchJob(pb.WatchJobRequest(job_id="parsed-once"), metadata=AUTH):
        stub.GetJob(pb.GetJobRequest(job_id="parsed-once"), metadata=AUTH)
        stub.ListJobs(pb.ListJobsRequest(), metadata=AUTH)
        last = reply.event
    assert state_from_proto(last.finished.state).value == "SUCCEEDED", last.finished.error
    assert len(calls) == 1  # SubmitJob's; admission, the store, GetJob, ListJobs, watch: none


def _bytes_read() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def test_submit_reads_only_the_headers_of_a_large_data_file(service):
    rows, features = 400_000, 128  # 205 MB of float32 features
    x = np.zeros((rows, features), np.float32)
    y = np.arange(rows) % 10
    np.savez(service.data_root / "large.npz", X=x, y=y)
    size = (service.data_root / "large.npz").stat().st_size
    client = service.client()
    before = _bytes_read()
    job = client.submit(spec(data={"source": "large.npz"}, training={"max_steps": 0}))
    read = _bytes_read() - before
    assert read < size / 20, f"SubmitJob read {read:,} bytes of a {size:,}-byte file"
    client.cancel(job.job_id)
