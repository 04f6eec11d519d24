"""Kill the service (and with it its embedded Ray) mid-job; started again, it resumes the job."""

from __future__ import annotations

import json
import signal

from ps.client import Client
from tests.conftest import wait_until
from tests.runtime.helpers import spec
from tests.service.test_restart import _serve


def test_a_running_job_resumes_after_the_service_is_killed(tmp_path):
    storage = tmp_path / "storage"
    proc, address = _serve(storage)
    try:
        client = Client(address, token="restart-token")
        client.submit(spec(training={"workers": 1, "epochs": 1}), job_id="done-before")
        assert [e for e in client.watch("done-before")][-1].finished.result.test_accuracy > 0.5
        client.submit(
            spec(
                training={"workers": 2, "batch_size": 16, "epochs": 10},
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
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    proc, address = _serve(storage)
    try:
        client = Client(address, token="restart-token")
        final = [e for e in client.watch("interrupted")][-1].finished
        assert final.error == "", final.error
        result = json.loads(final.result.result_json)
        assert result["test_accuracy"] >= 0.9
        assert final.attempts == 2
        events = [
            json.loads(line)
            for line in (storage / "interrupted" / "metrics.jsonl").read_text().splitlines()
        ]
        first_step_after_resume = [e for e in events if e["type"] == "evaluation"]
        steps = [e["step"] for e in first_step_after_resume]
        assert steps == sorted(set(steps))  # resumed from the checkpoint, nothing evaluated twice
        assert {j.job_id for j in client.list()} >= {"done-before", "interrupted"}
        assert client.get("done-before").result.test_accuracy > 0.5
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
