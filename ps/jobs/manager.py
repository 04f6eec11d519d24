"""The job manager: admission, a FIFO queue, supervisors, cancel, and recovery after restarts.

No transport here: ps/api calls these methods and maps the errors to status codes. The manager
talks to supervisors only; it never talks to workers or shards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from ps.errors import SpecError, clip
from ps.jobs.actors import actor_name
from ps.jobs.admission import admit, check_fits, required_resources
from ps.jobs.ensemble import supervisor_class
from ps.jobs.errors import (
    ClusterUnavailable,
    JobExists,
    JobNotFinished,
    JobNotFound,
    QueueFull,
    ResourceError,
)
from ps.jobs.events import Evaluation, Event, JobEnded, Progress, StateChanged
from ps.jobs.state import JobState
from ps.jobs.store import JobRecord, JobStore
from ps.jobs.usercode import UserCodeNotAllowed, runtime_env, unpack_code
from ps.metrics import ServiceMetrics
from ps.spec import JobSpec

log = logging.getLogger(__name__)
_OUTCOMES = {
    SpecError: "invalid",
    JobExists: "duplicate",
    ResourceError: "too_large",
    QueueFull: "queue_full",
    ClusterUnavailable: "unavailable",
    UserCodeNotAllowed: "forbidden",
}

NAMESPACE = "ps"
EXPORT_FORMATS = ("pt", "pt2")
JOB_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
MAX_JOB_ID = 128


def check_job_id(job_id: str) -> str:
    """A job id is 1-128 letters, digits, '-', '_' or '.', not starting with '.' or '-'.

    Raises:
        SpecError: any other id.
    """
    if not (
        0 < len(job_id) <= MAX_JOB_ID and set(job_id) <= JOB_ID_CHARS and job_id[0] not in ".-"
    ):
        raise SpecError(
            "job_id",
            f"{clip(job_id, 60)}: use 1-{MAX_JOB_ID} letters, digits, '-', '_' or '.' "
            "(not starting with '.' or '-')",
        )
    return job_id


@dataclass(frozen=True)
class ManagerConfig:
    """Service-wide settings.

    Attributes:
        storage: run directories go to ``storage/<job_id>/``.
        data_root: data files and ``init_from`` models must resolve inside it.
        max_queue: queued jobs beyond this are refused (RESOURCE_EXHAUSTED).
        cancel_timeout_s: how long CancelJob waits for the job's actors to be gone.
        allow_user_code: accept jobs that run the user's own code (``model.module``,
            ``model.loss_fn``, a code archive); it runs in the jobs' actors, never here.
    """

    storage: Path
    data_root: Path
    max_queue: int = 100
    cancel_timeout_s: float = 60.0
    allow_user_code: bool = False


class _Running:
    """What the manager holds for a job it started."""

    def __init__(self, supervisor: Any, reserved: dict[str, float]) -> None:
        self.supervisor = supervisor
        self.reserved = reserved
        self.cancel_requested = False
        self.thread: threading.Thread | None = None


class JobManager:
    """Submits, queues, starts, watches and cancels jobs; the store is the source of truth."""

    def __init__(
        self, store: JobStore, config: ManagerConfig, metrics: ServiceMetrics | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._running: dict[str, _Running] = {}
        self._subscribers: dict[str, list[queue.Queue]] = {}
        self._stopping = False
        self._scheduler: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Recover what the store says was active, then start admitting queued jobs."""
        for job in self.store.in_states(JobState.STARTING, JobState.RUNNING):
            self._recover(job)
        self._scheduler = threading.Thread(
            target=self._schedule_loop, name="ps-scheduler", daemon=True
        )
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop admitting and watching. Running jobs keep running (their supervisors are detached)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._scheduler:
            self._scheduler.join(timeout=5)

    def _recover(self, job: JobRecord) -> None:
        if job.spec is None:
            self._fail_unreadable(job)
            return
        try:
            supervisor = ray.get_actor(actor_name(job.job_id, "supervisor"), namespace=NAMESPACE)
            ray.get(supervisor.poll.remote(0, 0), timeout=10)
        except Exception:  # noqa: BLE001 - any failure to reach it means it is gone
            self._retry_or_fail(job, "the service restarted while the job was running")
            return
        log.info("re-attaching to running job %s", job.job_id)
        self._watch(job.job_id, _Running(supervisor, required_resources(job.spec)))

    def _fail_unreadable(self, job: JobRecord) -> None:
        """A record that cannot be read back fails on its own; it blocks nothing."""
        log.error("job %s: %s", job.job_id, job.unreadable)
        failed = self._finish(job.job_id, JobState.FAILED, error=job.unreadable)
        if failed:
            self._publish_final(failed)

    def _retry_or_fail(self, job: JobRecord, cause: str) -> JobRecord | None:
        """Requeue a job whose supervisor is gone (it resumes from its last checkpoint), or fail it
        once ``training.max_failures`` restarts are spent."""
        budget = job.spec.training.max_failures
        if job.attempts <= budget:
            log.warning("job %s: %s; restarting from its last checkpoint", job.job_id, cause)
            requeued = self.store.transition(
                job.job_id, JobState.QUEUED, resume=1, error=f"restarting: {cause}"
            )
            self._publish(job.job_id, StateChanged(state=JobState.QUEUED))
            return requeued
        failed = self.store.transition(
            job.job_id,
            JobState.FAILED,
            error=f"{cause}; gave up after {job.attempts} attempts (training.max_failures={budget})",
        )
        self._publish_final(failed)
        return None

    def resume(self, job_id: str) -> JobRecord:
        """Continue a FAILED or CANCELLED job from its last checkpoint with a fresh failure budget.

        Raises:
            TerminalState: the job succeeded or is still active.
        """
        with self._wake:
            job = self.store.reopen(job_id)
            self._wake.notify_all()
        self._publish(job_id, StateChanged(state=JobState.QUEUED))
        return job

    # -- requests ----------------------------------------------------------------------------
    def submit(
        self,
        spec: JobSpec,
        job_id: str | None = None,
        resume: bool = False,
        code_archive: bytes | None = None,
    ) -> JobRecord:
        """Check and enqueue a job (see :meth:`_submit`), counting the outcome.

        With ``resume`` and the id of a FAILED or CANCELLED job, that job resumes instead.
        """
        if resume and job_id:
            with contextlib.suppress(JobNotFound):
                return self.resume(job_id)
        try:
            record = self._submit(spec, job_id, code_archive)
        except Exception as exc:
            self._count_submission(_OUTCOMES.get(type(exc), "error"))
            raise
        self._count_submission("accepted")
        return record

    def _count_submission(self, outcome: str) -> None:
        if self.metrics:
            self.metrics.submissions.labels(outcome).inc()

    def _submit(self, spec: JobSpec, job_id: str | None, code_archive: bytes | None) -> JobRecord:
        """Check and enqueue a job; it starts as soon as the cluster has room. Nothing is
        created (no record, no file) unless every check passed.

        Raises:
            UserCodeNotAllowed: user code on a service without ``allow_user_code``.
            SpecError: invalid job id, paths, data headers, model for the data, code archive.
            ResourceError: the job can never fit on the cluster.
            QueueFull: the queue is at its limit.
            JobExists: ``job_id`` was already submitted.
            ClusterUnavailable: Ray cannot be reached.
        """
        job_id = check_job_id(job_id) if job_id else f"job-{uuid.uuid4().hex[:12]}"
        allowed = self.config.allow_user_code
        if code_archive and not allowed:
            raise UserCodeNotAllowed(
                "this service runs no user code (a code archive came with the job); an "
                "operator can allow it by starting the service with --allow-user-code"
            )
        incoming = self.config.storage / ".incoming" / uuid.uuid4().hex
        try:
            if code_archive:
                code = unpack_code(code_archive, incoming)
                spec = spec.model_copy(
                    update={"model": spec.model.model_copy(update={"code": str(code)})}
                )
            admission = admit(spec, self.config.data_root, allow_user_code=allowed)
            check_fits(admission, self._cluster_resources())
            return self._enqueue(job_id, admission.spec, incoming if code_archive else None)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def _enqueue(self, job_id: str, spec: JobSpec, code: Path | None) -> JobRecord:
        with self._wake:
            if len(self.store.in_states(JobState.QUEUED)) >= self.config.max_queue:
                raise QueueFull(
                    f"the queue holds {self.config.max_queue} jobs already; retry later"
                )
            run_dir = (self.config.storage / job_id).resolve()
            if code is not None:  # the job's own copy of its code, in its run directory
                if self.store.exists(job_id):
                    raise JobExists(f"job {clip(job_id)} already exists")
                run_dir.mkdir(parents=True, exist_ok=True)
                shutil.copytree(code, run_dir / "code", dirs_exist_ok=True)
                model = spec.model.model_copy(update={"code": str(run_dir / "code")})
                spec = spec.model_copy(update={"model": model})
            record = self.store.create(job_id, spec, str(run_dir))
            self._wake.notify_all()
        self._publish(job_id, StateChanged(state=JobState.QUEUED))
        return record

    def get(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def list(
        self, states: list[JobState] | None = None, limit: int = 100, before_seq: int | None = None
    ):
        return self.store.list(states, limit, before_seq)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued or running job; waits until its actors are gone. Terminal: no-op."""
        with self._wake:
            job = self.store.get(job_id)
            if job.state.is_terminal():
                return job
            if job.state == JobState.QUEUED:
                job = self.store.transition(
                    job_id, JobState.CANCELLED, error="cancelled while queued"
                )
                self._publish_final(job)
                return job
            running = self._running.get(job_id)
            if running:
                running.cancel_requested = True
        if running is None:  # STARTING before its supervisor exists: the starter sees the flag
            return self.store.get(job_id)
        with contextlib.suppress(Exception):
            ray.get(running.supervisor.cancel.remote(), timeout=10)
        if running.thread:
            running.thread.join(timeout=self.config.cancel_timeout_s)
        return self.store.get(job_id)

    def delete(self, job_id: str) -> None:
        """Remove a terminal job's record and run directory.

        Raises:
            JobNotFinished: the job is queued or running (cancel it first).
        """
        job = self.store.get(job_id)
        if not job.state.is_terminal():
            raise JobNotFinished(
                f"job {clip(job_id)} is {job.state.value}; cancel it before deleting"
            )
        run_dir = Path(job.run_dir)
        if run_dir.is_dir() and run_dir.resolve().is_relative_to(self.config.storage.resolve()):
            shutil.rmtree(run_dir, ignore_errors=True)
        self.store.delete(job_id)

    def model_path(self, job_id: str, fmt: str = "pt") -> Path:
        """The exported model of a succeeded job: ``model.pt``, or ``model.pt2`` (``fmt``).

        Raises:
            SpecError: an unknown format.
            JobNotFinished: the job has not succeeded (or its model file is gone).
        """
        if fmt not in EXPORT_FORMATS:
            raise SpecError("format", f"unknown export format {clip(fmt)} (use pt or pt2)")
        job = self.store.get(job_id)
        if job.state != JobState.SUCCEEDED:
            raise JobNotFinished(
                f"job {clip(job_id)} is {job.state.value}; only SUCCEEDED jobs have a model"
            )
        path = Path(job.run_dir) / f"model.{fmt}"
        if not path.is_file():
            raise JobNotFinished(f"job {clip(job_id)} succeeded but {path} is missing")
        return path

    # -- events ------------------------------------------------------------------------------
    def subscribe(self, job_id: str) -> queue.Queue:
        """A queue receiving the job's events from now on (``finished`` is the last one)."""
        q: queue.Queue = queue.Queue()
        with self._lock:
            self._subscribers.setdefault(job_id, []).append(q)
        return q

    def unsubscribe(self, job_id: str, q: queue.Queue) -> None:
        with self._lock:
            subs = self._subscribers.get(job_id, [])
            if q in subs:
                subs.remove(q)
            if not subs:
                self._subscribers.pop(job_id, None)

    def _publish(self, job_id: str, event: Event) -> None:
        with self._lock:
            subs = list(self._subscribers.get(job_id, []))
        if not event.time:
            event = dataclasses.replace(event, job_id=job_id, time=time.time())
        for q in subs:
            q.put(event)

    def _publish_final(self, job: JobRecord) -> None:
        self._publish(job.job_id, JobEnded(job=job))

    # -- scheduling --------------------------------------------------------------------------
    def _cluster_resources(self) -> dict[str, float]:
        try:
            return ray.cluster_resources()
        except Exception as exc:  # noqa: BLE001
            raise ClusterUnavailable(f"the Ray cluster is unreachable: {exc}") from None

    def _free(self) -> dict[str, float]:
        free = dict(self._cluster_resources())
        for running in self._running.values():
            for kind, amount in running.reserved.items():
                free[kind] = free.get(kind, 0.0) - amount
        return free

    def _schedule_loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                try:
                    self._admit()
                except Exception:  # noqa: BLE001 - keep scheduling whatever one job did
                    log.exception("admission failed")
                self._wake.wait(timeout=1.0)

    def _admit(self) -> None:
        """Start queued jobs in FIFO order while the head of the queue fits."""
        for job in self.store.in_states(JobState.QUEUED):
            if job.spec is None:
                self._fail_unreadable(job)
                continue
            need = required_resources(job.spec)
            free = self._free()
            if any(amount > free.get(kind, 0.0) + 1e-9 for kind, amount in need.items()):
                return  # strict FIFO: later jobs wait behind the head of the queue
            self._start(job, need)

    def _start(self, job: JobRecord, need: dict[str, float]) -> None:
        self.store.transition(
            job.job_id,
            JobState.STARTING,
            started_at=time.time(),
            attempts=job.attempts + 1,
            error="",
        )
        self._publish(job.job_id, StateChanged(state=JobState.STARTING))
        try:
            supervisor = (
                ray.remote(supervisor_class(job.spec))
                .options(
                    name=actor_name(job.job_id, "supervisor"),
                    namespace=NAMESPACE,
                    lifetime="detached",
                    num_cpus=0,
                    max_concurrency=1000,
                    runtime_env=runtime_env(job.spec),
                )
                .remote(job.job_id, job.spec, job.run_dir, resume=job.resume or job.attempts > 0)
            )
            supervisor.run.remote()
        except Exception as exc:  # noqa: BLE001
            failed = self.store.transition(
                job.job_id, JobState.FAILED, error=f"could not start: {exc}"
            )
            self._publish_final(failed)
            return
        self._watch(job.job_id, _Running(supervisor, need))

    def _watch(self, job_id: str, running: _Running) -> None:
        with self._lock:
            self._running[job_id] = running
        running.thread = threading.Thread(
            target=self._monitor, args=(job_id, running), name=f"ps-monitor-{job_id}", daemon=True
        )
        running.thread.start()

    def _monitor(self, job_id: str, running: _Running) -> None:
        """Relay a job's events to the store and subscribers until it ends, then record the end."""
        cursor, error = 0, ""
        try:
            while True:
                events, cursor, done = ray.get(
                    running.supervisor.poll.remote(cursor, 1.0), timeout=60
                )
                for event in events:
                    self._on_event(job_id, event)
                if done:
                    break
                if self._stopping:
                    return
            outcome = ray.get(running.supervisor.outcome.remote(), timeout=30)
        except Exception as exc:  # noqa: BLE001 - the supervisor died or Ray failed
            outcome, error = None, f"the job's supervisor died: {str(exc).splitlines()[0]}"
        with contextlib.suppress(Exception):
            ray.kill(running.supervisor, no_restart=True)
        if outcome is None and not running.cancel_requested and not self._stopping:
            with self._wake:
                self._running.pop(job_id, None)
                requeued = self._retry_or_fail(self.store.get(job_id), error)
                self._wake.notify_all()
            if requeued is not None:
                return  # the scheduler starts it again, resuming from the last checkpoint
            if self.metrics:
                self.metrics.telemetry.end(job_id)
            return
        if outcome is not None and outcome.get("result"):
            result = outcome["result"]
            progress = Progress(
                step=result.steps,
                total_steps=result.total_steps,
                epoch=result.epochs,
                train_loss=result.train_loss,
                samples=result.samples,
                samples_per_s=result.samples_per_s,
            )
            final = self._finish(job_id, JobState.SUCCEEDED, result=result, progress=progress)
        elif running.cancel_requested or (outcome or {}).get("cancelled"):
            final = self._finish(job_id, JobState.CANCELLED, error="cancelled")
        else:
            final = self._finish(
                job_id, JobState.FAILED, error=(outcome or {}).get("error") or error
            )
        with self._wake:
            self._running.pop(job_id, None)
            self._wake.notify_all()
        if self.metrics:
            self.metrics.telemetry.end(job_id)
        if final:
            self._publish_final(final)

    def _finish(self, job_id: str, state: JobState, **fields: Any) -> JobRecord | None:
        try:
            return self.store.transition(job_id, state, **fields)
        except Exception:  # noqa: BLE001 - already terminal (e.g. deleted meanwhile)
            log.exception("could not record the end of %s", job_id)
            return None

    def _on_event(self, job_id: str, event: Event) -> None:
        if self.metrics:
            self.metrics.telemetry.update(job_id, event)
        if isinstance(event, StateChanged) and event.state == JobState.RUNNING:
            self.store.transition(job_id, JobState.RUNNING)
            self.store.update(
                job_id,
                progress=Progress(
                    step=event.start_step,
                    total_steps=event.total_steps,
                    epoch=event.start_step / max(1, event.steps_per_epoch),
                ),
            )
        elif isinstance(event, Progress):
            self.store.update(job_id, progress=event)
        if isinstance(event, StateChanged | Progress | Evaluation):
            self._publish(job_id, event)
