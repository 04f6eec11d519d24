"""One way to start and follow a job's supervisor: :class:`SupervisorHandle`.

The job manager (service jobs, detached supervisors it may re-attach to after a restart), the
runner (``psctl run``) and an ensemble (its member supervisors) all start a supervisor, follow
its events and read how it ended through this handle; none polls a supervisor on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import ray

from ps.errors import PSError
from ps.jobs.actors import actor_name
from ps.jobs.attempt import first_line
from ps.jobs.events import Event, JobResult
from ps.jobs.hooks import pause_at
from ps.jobs.usercode import runtime_env
from ps.spec import JobSpec

log = logging.getLogger(__name__)
POLL_S = 1.0  # how long one poll waits for an event
POLL_DEADLINE_S = 60.0  # a supervisor that answers no poll for this long is taken for dead
RUN_READ_S = 1.0  # how long a kill waits to read the run it ends


@dataclass(frozen=True)
class Outcome:
    """How a job's supervisor ended.

    Attributes:
        kind: ``succeeded`` (``result`` is set), ``cancelled``, ``preempted`` (stopped at a
            checkpoint to go back to the queue; ``reason`` says where) or ``failed``
            (``reason`` says why; ``error`` is the domain error that failed it, when there is
            one: a spec the data refutes, say).
    """

    kind: Literal["succeeded", "cancelled", "preempted", "failed"]
    result: JobResult | None = None
    reason: str = ""
    error: PSError | None = None

    @classmethod
    def succeeded(cls, result: JobResult) -> Outcome:
        return cls("succeeded", result=result)

    @classmethod
    def cancelled(cls) -> Outcome:
        return cls("cancelled", reason="cancelled")

    @classmethod
    def preempted(cls, reason: str) -> Outcome:
        return cls("preempted", reason=reason)

    @classmethod
    def failed(cls, exc: BaseException | str) -> Outcome:
        if isinstance(exc, str):
            return cls("failed", reason=exc)
        error = exc if isinstance(exc, PSError) else None
        return cls("failed", reason=f"{type(exc).__name__}: {exc}", error=error)


class SupervisorLost(Exception):
    """The supervisor died or stopped answering (its outcome is unknown)."""


class SupervisorHandle:
    """A job's supervisor actor, its event stream and its outcome.

    Build one with :meth:`start` or :meth:`attach`.
    """

    def __init__(self, actor: Any, job_id: str, run: Any = None) -> None:
        self.actor = actor
        self.job_id = job_id
        self._run = run  # the ref of the run this handle started (None: re-attached)

    @classmethod
    def start(
        cls,
        job_id: str,
        spec: JobSpec,
        run_dir: str,
        *,
        resume: bool = False,
        member: Any = None,
        detached: bool = False,
        namespace: str | None = None,
        attempt: int = 0,
    ) -> SupervisorHandle:
        """Create the job's supervisor (an ensemble's for an ensemble spec) and start its run.

        ``detached``: it outlives the process that started it (the service's jobs survive a
        restart of the service); ``member``: an ensemble member (:class:`ps.jobs.admission.Member`);
        ``attempt``: the store's attempt number it runs (see :meth:`attach`).
        """
        from ps.jobs.ensemble import supervisor_class  # the ensemble itself starts members here

        options: dict[str, Any] = {
            "name": actor_name(job_id, "supervisor"),
            "num_cpus": 0,
            "max_concurrency": 1000,
            "runtime_env": runtime_env(spec),
        }
        if namespace is not None:
            options["namespace"] = namespace
        if detached:
            options["lifetime"] = "detached"
        kwargs: dict[str, Any] = {"resume": resume, "attempt": attempt}
        if member is not None:
            kwargs["member"] = member
        actor = (
            ray.remote(supervisor_class(spec))
            .options(**options)
            .remote(job_id, spec, run_dir, **kwargs)
        )
        pause_at("supervisor-created")  # a test's window: the actor exists, its job not yet
        return cls(actor, job_id, actor.run.remote())

    @classmethod
    def attach(
        cls, job_id: str, attempt: int, namespace: str | None = None, timeout: float = 10.0
    ) -> SupervisorHandle | None:
        """The supervisor running attempt ``attempt`` of ``job_id``, or None.

        A supervisor that is found must prove it runs this job: it answers, it was started for
        this attempt, and it was handed the job (its ``run`` began; a service that died between
        creating a supervisor and starting it leaves one that never will). One that does not is
        ended here, so that the job can start again as a new attempt.
        """
        try:
            actor = ray.get_actor(actor_name(job_id, "supervisor"), namespace=namespace)
        except ValueError:
            return None
        try:
            identity = ray.get(actor.identity.remote(), timeout=timeout)
        except Exception:  # noqa: BLE001 - dead, hung or unreachable: it is not running the job
            identity = None
        if identity != (attempt, True):
            log.warning(
                "job %s: ending supervisor %s (attempt %d running)", job_id, identity, attempt
            )
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
            return None
        return cls(actor, job_id)

    # -- following it ------------------------------------------------------------------------
    def events(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
        """Its events from the first on, until it is done (or ``stop()`` says so).

        Raises:
            SupervisorLost: it died or answered no poll within :data:`POLL_DEADLINE_S`.
        """
        cursor, done = 0, False
        while not done and not stop():
            try:
                ref = self.actor.poll.remote(cursor, POLL_S)
                events, cursor, done = ray.get(ref, timeout=POLL_DEADLINE_S)
            except Exception as exc:  # noqa: BLE001 - the actor died, hung, or Ray failed
                raise SupervisorLost(first_line(exc)) from None
            yield from events

    async def stream(self) -> AsyncIterator[Event]:
        """:meth:`events`, for a caller on an event loop (an ensemble's supervisor)."""
        cursor, done = 0, False
        while not done:
            try:
                ref = self.actor.poll.remote(cursor, POLL_S)
                events, cursor, done = await asyncio.wait_for(ref, POLL_DEADLINE_S)
            except Exception as exc:  # noqa: BLE001
                raise SupervisorLost(first_line(exc)) from None
            for event in events:
                yield event

    def outcome(self, timeout: float = 30.0) -> Outcome:
        """How it ended (after :meth:`events` ran out).

        Raises:
            SupervisorLost: it cannot be asked (dead), or has not ended.
        """
        try:
            outcome = ray.get(self.actor.outcome.remote(), timeout=timeout)
        except Exception as exc:  # noqa: BLE001
            raise SupervisorLost(first_line(exc)) from None
        if outcome is None:
            raise SupervisorLost("the supervisor has not ended")
        return outcome

    # -- ending it ---------------------------------------------------------------------------
    def cancel(self, timeout: float = 10.0) -> None:
        """Ask it to cancel the job (it ends with a ``cancelled`` outcome)."""
        with contextlib.suppress(Exception):
            ray.get(self.actor.cancel.remote(), timeout=timeout)

    def preempt(self, timeout: float = 10.0) -> bool:
        """Ask it to stop at a checkpoint of the current step and end with a ``preempted``
        outcome; returns once it has taken the request (False: it did not answer in
        ``timeout`` s). :meth:`events` and :meth:`outcome` tell when it has ended."""
        try:
            ray.get(self.actor.preempt.remote(), timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - gone or hung: the caller's deadline decides
            return False

    def kill(self) -> None:
        """End the actor (whatever it is doing). The run this handle started is read around
        the kill (it returns as soon as the job ended), so that no error of it is left unread:
        Ray logs those as an "Unhandled error" traceback."""
        if self._run is not None:
            with contextlib.suppress(Exception):
                ray.wait([self._run], timeout=RUN_READ_S)
        with contextlib.suppress(Exception):
            ray.kill(self.actor, no_restart=True)
        if self._run is not None:
            with contextlib.suppress(Exception):
                ray.get(self._run, timeout=RUN_READ_S)
            self._run = None
