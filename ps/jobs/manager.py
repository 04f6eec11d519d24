"""The job manager: submissions (checked before anything is created), the queue, cancel, delete,
export and watch requests; :mod:`ps.jobs.scheduler` starts, follows and recovers the jobs.

No transport here: ps/api calls these methods and maps the errors to status codes. The manager
talks to supervisors only (through their handles); it never talks to workers or shards.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from ps.errors import SpecError, clip
from ps.jobs.admission import admit, check_fits, check_whole_data
from ps.jobs.errors import (
    ClusterUnavailable,
    JobExists,
    JobNotFinished,
    JobNotFound,
    QueueFull,
    ResourceError,
    StoreUnavailable,
)
from ps.jobs.events import Event, StateChanged
from ps.jobs.scheduler import Scheduler
from ps.jobs.state import JobState
from ps.jobs.store import JobRecord, JobStore
from ps.jobs.subscribers import Subscribers
from ps.jobs.usercode import UserCodeNotAllowed, unpack_code
from ps.metrics import ServiceMetrics
from ps.spec import JobSpec

log = logging.getLogger(__name__)
_OUTCOMES = {
    SpecError: "invalid",
    JobExists: "duplicate",
    ResourceError: "too_large",
    QueueFull: "queue_full",
    ClusterUnavailable: "unavailable",
    StoreUnavailable: "unavailable",
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
        start_timeout_s: a job whose supervisor reports no RUNNING this long after it was
            started starts again as a new attempt (a stuck start never holds the queue).
        allow_user_code: accept jobs that run the user's own code (``model.module``,
            ``model.loss_fn``, a code archive); it runs in the jobs' actors, never here.
        hand_back_timeout_s: at shutdown, how long running jobs get to checkpoint and go back
            to the queue (they resume on the next start); 0: they keep running, and the next
            start re-attaches to them.
    """

    storage: Path
    data_root: Path
    max_queue: int = 100
    cancel_timeout_s: float = 60.0
    allow_user_code: bool = False
    start_timeout_s: float = 600.0
    hand_back_timeout_s: float = 60.0


class JobManager:
    """Submits, queues, starts, watches and cancels jobs; the store is the source of truth."""

    def __init__(
        self, store: JobStore, config: ManagerConfig, metrics: ServiceMetrics | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.subscribers = Subscribers()
        self.scheduler = Scheduler(
            store, self.subscribers, metrics, NAMESPACE, config.start_timeout_s
        )
        self._wake = self.scheduler.wake  # held while the queue changes

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Recover what the store says was active, then start admitting queued jobs."""
        self.scheduler.start()

    def shutdown(self) -> None:
        """Hand the running jobs back to the queue, checkpointed (within
        ``hand_back_timeout_s``), then stop admitting and watching. A job not handed back in
        time keeps running (its supervisor is detached) and is re-attached on the next start."""
        if self.config.hand_back_timeout_s > 0:
            self.scheduler.hand_back(self.config.hand_back_timeout_s)
        self.scheduler.shutdown()

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
            check_whole_data(admission.spec)
            check_fits(admission, self.scheduler.capacity.total())
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
            try:
                record = self.store.create(job_id, spec, str(run_dir))
            except StoreUnavailable:
                if code is not None:  # a refused submission leaves nothing behind
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
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
            running = self.scheduler.running(job_id)
            if running:
                running.cancel_requested = True
        if running is None:  # STARTING before its supervisor exists: the starter sees the flag
            return self.store.get(job_id)
        running.handle.cancel()
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
        return self.subscribers.subscribe(job_id)

    def unsubscribe(self, job_id: str, q: queue.Queue) -> None:
        self.subscribers.unsubscribe(job_id, q)

    def _publish(self, job_id: str, event: Event) -> None:
        self.subscribers.publish(job_id, event)

    def _publish_final(self, job: JobRecord) -> None:
        self.scheduler.publish_final(job)
