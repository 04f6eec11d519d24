"""Run one job from this process: connect to (or start) Ray, start the supervisor, stream events.

Used by ``psctl run``. The embedded local Ray is started explicitly (``address="local"``): a bare
``ray.init()`` would attach to whatever ``ray start`` cluster runs on the machine.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray

from ps.errors import PSError
from ps.jobs import usercode
from ps.jobs.actors import actor_name
from ps.jobs.admission import admit, check_fits
from ps.jobs.ensemble import supervisor_class
from ps.jobs.errors import ResourceError  # noqa: F401 - re-exported for callers of run_job
from ps.jobs.events import Event, JobResult
from ps.spec import JobSpec


class JobFailed(PSError):
    """The job started but did not succeed."""


@contextlib.contextmanager
def ray_session(
    address: str | None = None, num_cpus: int | None = None, namespace: str | None = None
) -> Iterator[dict[str, Any]]:
    """Use the running Ray, connect to ``address`` (or ``RAY_ADDRESS``), or start a local one.

    Only what this function started is shut down on exit.
    """
    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=namespace, logging_level="WARNING", log_to_driver=False)
    else:
        ray.init(
            address="local",
            namespace=namespace,
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=False,
        )
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


def run_job(
    spec: JobSpec,
    output: Path,
    on_event: Callable[[Event], None] | None = None,
    job_id: str | None = None,
) -> JobResult:
    """Run ``spec`` to completion on the connected Ray cluster and return its result.

    The admission checks run here, before any actor starts; relative paths are taken against
    the current directory.

    Raises:
        SpecError: invalid data or model for the data.
        ResourceError: the job can never fit on the cluster.
        JobFailed: an actor failed during training.
    """
    admission = admit(spec, None, Path.cwd())
    check_fits(admission, ray.cluster_resources())
    job_id = job_id or f"run-{uuid.uuid4().hex[:8]}"
    supervisor = (
        ray.remote(supervisor_class(admission.spec))
        .options(
            name=actor_name(job_id, "supervisor"),
            num_cpus=0,
            max_concurrency=1000,
            runtime_env=usercode.runtime_env(admission.spec),
        )
        .remote(job_id, admission.spec, str(output.resolve()))
    )
    done_ref = supervisor.run.remote()
    cursor = 0
    try:
        while True:
            events, cursor, done = ray.get(supervisor.poll.remote(cursor, 0.5))
            for event in events:
                if on_event:
                    on_event(event)
            if done:
                break
        try:
            return ray.get(done_ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            if isinstance(cause, PSError):
                raise cause from None
            raise JobFailed(f"job {job_id} failed: {cause}") from None
        except ray.exceptions.RayActorError as exc:
            raise JobFailed(f"job {job_id} failed: its supervisor died ({exc})") from None
    finally:
        with contextlib.suppress(Exception):
            ray.kill(supervisor)
