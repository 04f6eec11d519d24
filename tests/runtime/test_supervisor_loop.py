"""The supervisor's event loop stays responsive at the end of a job: while the final
evaluation and the model save run (however long they take), polls and cancels are answered, so
no follower takes a busy supervisor for a dead one."""

from __future__ import annotations

import ray

from ps.jobs.hooks import PAUSE_DIR_ENV
from ps.jobs.supervisor import JobSupervisor
from ps.spec import parse_spec
from tests.conftest import wait_until
from tests.runtime.helpers import spec


def test_polls_are_answered_while_the_final_evaluation_runs(ray_runtime, tmp_path):
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    (pauses / "final-model.hold").touch()
    job = parse_spec(spec(training={"epochs": 3, "max_steps": 20}))  # 10 steps an epoch
    supervisor = (
        ray.remote(JobSupervisor)
        .options(
            num_cpus=0,
            max_concurrency=1000,
            runtime_env={"env_vars": {PAUSE_DIR_ENV: str(pauses)}},
        )
        .remote("loop-responsive", job, str(tmp_path / "run"))
    )
    try:
        run = supervisor.run.remote()
        wait_until(
            lambda: (pauses / "final-model.reached").exists(), 120, what="the final evaluation"
        )
        # Held inside the final evaluation: the loop still answers at once.
        events, cursor, done = ray.get(supervisor.poll.remote(0, 0), timeout=20)
        assert not done and cursor == len(events) > 0
        assert ray.get(supervisor.outcome.remote(), timeout=20) is None
        (pauses / "final-model.go").touch()
        outcome = ray.get(run, timeout=120)
        assert outcome.kind == "succeeded", outcome.reason
        assert outcome.result.steps == outcome.result.total_steps == 20
    finally:
        ray.kill(supervisor)
