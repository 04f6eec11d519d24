"""Run one job from this process: connect to (or start) Ray, start the supervisor, stream events.

Used by ``psctl run``. The embedded local Ray is started explicitly (``address="local"``): a bare
``ray.init()`` would attach to whatever ``ray start`` cluster runs on the machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray

from ps.errors import PSError
from ps.jobs.admission import admit, check_fits
from ps.jobs.errors import ResourceError  # noqa: F401 - re-exported for callers of run_job
from ps.jobs.events import Event, JobResult
from ps.jobs.handle import SupervisorHandle, SupervisorLost
from ps.jobs.recovery import remove_buffers
from ps.protocol import shm
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
        # Ray enables its token auth on a local cluster by default and says so on every start:
        # keep the auth, drop the notice (a new user reads it as a problem).
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
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
    resume: bool = False,
) -> JobResult:
    """Run ``spec`` to completion on the connected Ray cluster and return its result
    (``resume``: continue from the newest checkpoint in ``output``).

    The admission checks run here, before any actor starts; relative paths are taken against
    the current directory.

    Raises:
        SpecError: invalid data or model for the data.
        ResourceError: the job can never fit on the cluster.
        JobFailed: an actor failed during training.
    """
    admission = admit(spec, None, Path.cwd())
    check_fits(admission, ray.cluster_resources())
    shm.sweep_orphans()  # what workers of an earlier, killed run left on this machine
    job_id = job_id or f"run-{uuid.uuid4().hex[:8]}"
    handle = SupervisorHandle.start(job_id, admission.spec, str(output.resolve()), resume=resume)
    outcome = None
    try:
        for event in handle.events():
            if on_event:
                on_event(event)
        outcome = handle.outcome()
    except SupervisorLost as exc:
        raise JobFailed(f"job {job_id} failed: its supervisor died ({exc})") from None
    finally:
        handle.kill()
        if outcome is None or outcome.kind != "succeeded":  # interrupted, or its workers killed
            _remove_buffers(job_id)
    if outcome.kind == "succeeded":
        return outcome.result
    if outcome.error is not None:
        raise outcome.error
    raise JobFailed(f"job {job_id} failed: {outcome.reason}")


def _remove_buffers(job_id: str) -> None:
    """Remove the job's shared memory: on this machine at once (Ray may be going down with a
    Ctrl-C), on the other nodes of a cluster through Ray."""
    shm.unlink_prefix(shm.prefix(job_id))
    with contextlib.suppress(Exception):
        if len([n for n in ray.nodes() if n["Alive"]]) > 1:
            remove_buffers([job_id], timeout=10)
