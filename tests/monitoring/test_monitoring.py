"""Monitoring end to end: every family after a real job, removal, promtool, and a real Prometheus."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request

import grpc
import pytest

from tests.conftest import wait_until
from tests.runtime.helpers import spec
from tests.service.conftest import TOKEN, start_service


@pytest.fixture(scope="module")
def monitored(ray_runtime, tmp_path_factory):
    with start_service(tmp_path_factory.mktemp("monitored"), metrics=True) as svc:
        yield svc


def _scrape(url: str, token: str | None = TOKEN) -> str:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.read().decode()


def _run(svc, job_id: str, **overrides) -> dict:
    client = svc.client()
    client.submit(spec(**overrides), job_id=job_id)
    final = [e for e in client.watch(job_id)][-1].finished
    assert final.error == ""
    return json.loads(final.result.result_json)


def test_every_family_is_present_and_right_after_a_job(monitored):
    result = _run(
        monitored,
        "fam",
        training={"workers": 2, "epochs": 3, "batch_size": 128},
        ps={"shards": 2},
        checkpoint={"every_steps": 10},
    )
    get = monitored.metrics.registry.get_sample_value
    j = {"job_id": "fam"}
    steps, workers = result["steps"], 2
    assert get("ps_job_steps_total", j) == steps
    assert get("ps_job_samples_total", j) == result["samples"]
    assert get("ps_job_epoch", j) == pytest.approx(3.0)
    assert get("ps_job_validation_accuracy", j) == pytest.approx(
        result["final_evaluation"]["val_accuracy"]
    )
    assert get("ps_job_validation_loss", j) == pytest.approx(result["final_evaluation"]["val_loss"])
    assert get("ps_job_generalization_gap", j) == pytest.approx(
        result["final_evaluation"]["generalization_gap"]
    )
    assert get("ps_job_learning_rate", j) == pytest.approx(0.01)
    assert get("ps_job_train_loss", j) > 0
    assert get("ps_job_gradient_norm", {"job_id": "fam", "layer": "global"}) > 0
    assert get("ps_job_gradient_norm", {"job_id": "fam", "layer": "0.weight"}) > 0
    assert get("ps_job_workers", {"job_id": "fam", "state": "finished"}) == workers
    assert get("ps_job_worker_restarts_total", j) == 0
    # Every worker step is one pull and one push; each shard applies each of the `steps` updates.
    assert get("ps_pull_duration_seconds_count", j) == workers * steps
    assert get("ps_push_duration_seconds_count", j) == workers * steps
    assert get("ps_update_duration_seconds_count", j) == 2 * steps
    assert get("ps_gradient_staleness_steps_count", j) == workers * steps
    assert (
        get("ps_gradient_staleness_steps_bucket", {"job_id": "fam", "le": "0.0"}) == workers * steps
    )  # sync
    assert get("ps_checkpoint_duration_seconds_count", j) == steps // 10
    n_params = result["n_params"]
    assert get("ps_bytes_pushed_total", j) == workers * steps * n_params * 4
    assert get("ps_gradients_rejected_total", {"job_id": "fam", "reason": "non_finite"}) == 0
    assert get("ps_jobs", {"state": "SUCCEEDED"}) >= 1
    assert get("ps_job_submissions_total", {"outcome": "accepted"}) >= 1
    assert get("ps_grpc_requests_total", {"method": "SubmitJob", "code": "OK"}) >= 1
    assert get("ps_grpc_request_duration_seconds_count", {"method": "WatchJob"}) >= 1

    # Refused submissions and unauthenticated calls are counted with their outcome and code.
    with pytest.raises(grpc.RpcError):
        monitored.client().submit(spec(training={"workers": 64}))
    assert get("ps_job_submissions_total", {"outcome": "too_large"}) >= 1
    with pytest.raises(grpc.RpcError):
        monitored.client(token="nope").get("fam")
    assert get("ps_grpc_requests_total", {"method": "GetJob", "code": "UNAUTHENTICATED"}) >= 1

    # After the job, its series stay for the retention period, then go.
    assert 'job_id="fam"' in _scrape(monitored.metrics_url)
    monitored.metrics.telemetry.retention_s = 0
    try:
        assert get("ps_job_steps_total", j) is None
        assert 'job_id="fam"' not in _scrape(monitored.metrics_url)
    finally:
        monitored.metrics.telemetry.retention_s = 300


def test_metrics_endpoint_needs_the_token_when_the_service_has_one(monitored):
    with pytest.raises(urllib.error.HTTPError) as info:
        _scrape(monitored.metrics_url, token=None)
    assert info.value.code == 401
    assert "ps_jobs" in _scrape(monitored.metrics_url)


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)"
)
def test_promtool_finds_no_problems(monitored):
    _run(monitored, "lint", training={"epochs": 1})
    text = _scrape(monitored.metrics_url)
    assert "ps_push_duration_seconds_bucket" in text
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0 and check.stdout.strip() == "" and check.stderr.strip() == "", (
        check
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs the Debian package prometheus"
)
def test_a_real_prometheus_scrapes_the_job(monitored, tmp_path):
    port = _free_port()
    target = urllib.parse.urlparse(monitored.metrics_url).netloc
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: ps\n"
        f"    authorization: {{credentials: {TOKEN}}}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    api = f"http://127.0.0.1:{port}/api/v1/query?query="

    def query(q: str):
        with urllib.request.urlopen(api + urllib.parse.quote(q), timeout=5) as reply:
            data = json.loads(reply.read())["data"]["result"]
        return float(data[0]["value"][1]) if data else None

    try:
        wait_until(lambda: _ready(port), 60, what="prometheus to be ready")
        result = _run(monitored, "scraped", training={"epochs": 8})
        wait_until(
            lambda: query('ps_job_steps_total{job_id="scraped"}') == result["steps"],
            30,
            what="prometheus to scrape the final step count",
        )
        assert query('ps_job_validation_accuracy{job_id="scraped"}') > 0.8
        assert query('ps_push_duration_seconds_count{job_id="scraped"}') == 2 * result["steps"]
        assert query('ps_jobs{state="SUCCEEDED"}') >= 1
        assert query('up{job="ps"}') == 1
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_a_ctr_example_over_the_service_reports_auc_and_its_tables(monitored):
    """examples/ctr-deepfm.yaml (fewer samples) submitted over gRPC: result.json has AUC and the
    table figures, and Prometheus has the table families."""
    import yaml

    from tests.runtime.test_examples import EXAMPLES

    job = yaml.safe_load((EXAMPLES / "ctr-deepfm.yaml").read_text())
    job["data"]["n_samples"] = 6000
    client = monitored.client()
    client.submit(job, job_id="ctr")
    final = [e for e in client.watch("ctr")][-1].finished
    assert final.error == ""
    result = json.loads(final.result.result_json)
    assert final.result.HasField("test_auc") and final.result.test_auc == result["test_auc"]
    assert 0.5 < result["val_auc"] <= 1 and result["table_rows"] > 0
    get = monitored.metrics.registry.get_sample_value
    j = {"job_id": "ctr"}
    assert get("ps_job_validation_auc", j) == pytest.approx(result["final_evaluation"]["val_auc"])
    assert get("ps_table_rows", j) == result["table_rows"] == final.result.table_rows
    pushed = get("ps_rows_pushed_total", j)
    assert pushed >= result["table_rows"]  # every row was created by a push
    assert get("ps_rows_touched_per_step", j) == pytest.approx(pushed / result["steps"])
    assert get("ps_sparse_bytes_pushed_total", j) > pushed * 8
    assert get("ps_sparse_bytes_pulled_total", j) > 0
    # No lifecycle: every row created stays.
    assert get("ps_table_rows_admitted_total", j) == result["table_rows"]
    assert get("ps_table_rows_evicted_total", j) == get("ps_table_rows_expired_total", j) == 0
