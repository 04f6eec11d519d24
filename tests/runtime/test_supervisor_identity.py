"""A restarted service re-attaches only to a supervisor that proves it runs the job: started for
the store's current attempt and handed the job. One left by a service that died between creating
it and starting its run (or one of an older attempt) is ended, so the job can start again."""

from __future__ import annotations

import ray

from ps.jobs.actors import actor_name
from ps.jobs.handle import SupervisorHandle
from ps.jobs.supervisor import JobSupervisor
from ps.spec import parse_spec
from tests.conftest import wait_until
from tests.runtime.helpers import spec


def _gone(name: str, namespace: str) -> bool:
    try:
        ray.get_actor(name, namespace=namespace)
        return False
    except ValueError:
        return True


def test_a_supervisor_never_handed_its_job_or_of_another_attempt_is_ended(ray_runtime, tmp_path):
    job = parse_spec(spec(training={"epochs": 1}))
    for job_id, attempt, started in (("never-run", 1, False), ("old-attempt", 1, True)):
        name = actor_name(job_id, "supervisor")
        actor = (
            ray.remote(JobSupervisor)
            .options(name=name, namespace="ps", num_cpus=0, max_concurrency=10)
            .remote(job_id, job, str(tmp_path / job_id), attempt=attempt)
        )
        if started:
            actor.run.remote()
            wait_until(lambda a=actor: ray.get(a.identity.remote())[1], 60, what="its run")
        assert ray.get(actor.identity.remote()) == (attempt, started)
        if started:  # the supervisor of the current attempt, running it: re-attached
            assert SupervisorHandle.attach(job_id, attempt, namespace="ps").actor is not None
        # Then the store moves on to attempt 2 (the one that ran is stale); the one never handed
        # its job is not running attempt 1 either.
        current = 2 if started else 1
        assert SupervisorHandle.attach(job_id, current, namespace="ps") is None
        wait_until(lambda n=name: _gone(n, "ps"), 30, what=f"{name} to be ended")
    assert SupervisorHandle.attach("no-such-job", 1, namespace="ps") is None
