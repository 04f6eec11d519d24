"""A streamed click log through the service: parquet files under the data root, submitted over
gRPC as a glob, train like ``psctl run`` trains them; a glob that leaves the root is refused
and creates nothing."""

from __future__ import annotations

import grpc
import pytest

from ps.api.convert import state_from_proto
from ps.jobs.runner import run_job
from ps.spec import parse_spec
from tests.runtime.test_examples import clicks_spec


def test_a_click_log_streams_through_the_service_as_through_psctl_run(service, tmp_path):
    from examples.make_clicks import write_clicks

    write_clicks(service.data_root / "clicks", rows=40_000, files=3)
    client = service.client()
    job = client.submit(clicks_spec("clicks/*.parquet"), job_id="clicks")
    finished = None
    for event in client.watch(job.job_id):
        if event.WhichOneof("event") == "finished":
            finished = event.finished
    assert finished is not None and state_from_proto(finished.state).value == "SUCCEEDED"
    local = run_job(parse_spec(clicks_spec(service.data_root / "clicks")), tmp_path / "local")
    assert finished.result.steps == finished.progress.total_steps == local.steps
    assert finished.result.test_auc == pytest.approx(local.test_auc, abs=0.01)
    assert finished.result.test_auc > 0.65  # 40,000 rows, one epoch: it learned


def test_a_glob_outside_the_data_root_is_refused(service):
    client = service.client()
    with pytest.raises(grpc.RpcError) as err:
        client.submit(clicks_spec("../*.parquet"), job_id="escape")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ".." in err.value.details()
    assert "escape" not in [j.job_id for j in client.list()]
