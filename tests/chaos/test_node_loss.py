"""Remove a node without warning (ray.cluster_utils.Cluster): the job finishes on the remaining one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import ray
    from ray.cluster_utils import Cluster

    from ps.jobs.manager import JobManager, ManagerConfig
    from ps.jobs.store import JobStore
    from ps.spec import parse_spec
    from tests.runtime.helpers import spec

    root = Path(sys.argv[1])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=2), cluster.add_node(num_cpus=2)]
    ray.init(address=cluster.address, namespace="ps", logging_level="ERROR", log_to_driver=False)
    cluster.wait_for_nodes()
    store = JobStore(root / "jobs.db")
    (root / "data").mkdir(parents=True, exist_ok=True)
    manager = JobManager(store, ManagerConfig(storage=root / "runs", data_root=root / "data"))
    manager.start()
    job = spec(training={"workers": 1, "worker_resources": {"num_cpus": 2}, "batch_size": 16, "epochs": 12},
               checkpoint={"every_steps": 40})
    manager.submit(parse_spec(job), "node-loss")

    def deadline_wait(pred, seconds, what):
        end = time.monotonic() + seconds
        while not pred():
            if time.monotonic() > end:
                sys.exit(f"timed out waiting for {what}")
            time.sleep(0.1)

    ckpt = root / "runs" / "node-loss" / "checkpoints" / "step-00000080"
    deadline_wait(ckpt.is_dir, 120, "a checkpoint")
    from ray.util.state import list_tasks
    def worker_node():
        tasks = list_tasks(filters=[("name", "=", "ps:node-loss:worker:0")], limit=10_000)
        return next((t.node_id for t in tasks if t.state.startswith("RUNNING")), None)
    deadline_wait(worker_node, 60, "worker 0 to be listed")
    node_id = worker_node()
    (victim,) = [n for n in nodes if n.node_id == node_id]
    cluster.remove_node(victim, allow_graceful=False)
    print("removed the node of worker 0", flush=True)
    deadline_wait(lambda: store.get("node-loss").state.is_terminal(), 240, "the job to end")
    record = store.get("node-loss")
    print("state", record.state.value, "error", record.error, flush=True)
    assert record.state.value == "SUCCEEDED", record.error
    assert record.result.test_accuracy > 0.9, record.result
    # The whole budget (12 epochs of 79 steps), and the reason a fault-free run stops for.
    assert record.result.steps == record.result.total_steps == 12 * 79, record.result
    assert record.result.stop_reason == "epochs", record.result
    print("test_accuracy", record.result.test_accuracy, flush=True)
    manager.shutdown()
    ray.shutdown()
    cluster.shutdown()
    """
)


def test_job_survives_losing_a_node(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "removed the node of worker 0" in out.stdout and "state SUCCEEDED" in out.stdout
