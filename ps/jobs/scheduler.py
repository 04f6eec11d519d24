"""The scheduler: starts queued jobs when the cluster has room, follows their supervisors
through :class:`ps.jobs.handle.SupervisorHandle`, records how they end, recovers the jobs
that were active when the service last stopped, and hands running jobs back to the queue
(checkpointed) when the service stops.

It holds the running jobs (their handles) and, in :class:`ps.jobs.capacity.Capacity`, what they
reserve; the job manager (:mod:`ps.jobs.manager`) takes requests and asks it to cancel a running
job.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ps.jobs.admission import required_resources
from ps.jobs.capacity import Capacity
from ps.jobs.errors import StoreUnavailable
from ps.jobs.events import (
    Evaluation,
    Event,
    JobEnded,
    Progress,
    Restored,
    StateChanged,
    WorkerReplaced,
)
from ps.jobs.handle import Outcome, SupervisorHandle, SupervisorLost
from ps.jobs.hooks import pause_at
from ps.jobs.recovery import end_orphans, remove_buffers, sweep_buffers
from ps.jobs.state import JobState
from ps.jobs.store import JobRecord, JobStore
from ps.jobs.subscribers import Subscribers
from ps.metrics import ServiceMetrics

log = logging.getLogger(__name__)
STORE_RETRY_S = 1.0  # how often the end of a job is retried while the store refuses writes

RELAYED = (StateChanged, Progress, Evaluation, Restored, WorkerReplaced)
"""The supervisor events watchers receive (besides the manager's own state changes)."""


class _Running:
    """What the scheduler holds for a job it started (or re-attached to).

    ``start_by``: the monotonic time by which its supervisor must report RUNNING (None: it
    has).
    """

    def __init__(self, handle: SupervisorHandle, start_timeout_s: float) -> None:
        self.handle = handle
        self.cancel_requested = False
        self.thread: threading.Thread | None = None
        self.start_by: float | None = time.monotonic() + start_timeout_s

    def overdue(self) -> bool:
        return self.start_by is not None and time.monotonic() > self.start_by


class Scheduler:
    """Admission in FIFO order, supervisors followed to the end, recovery after restarts.

    Args:
        store: the job store (the source of truth).
        subscribers: the jobs' watchers.
        metrics: where job telemetry goes (optional).
        namespace: the Ray namespace of the service's supervisors (one service per namespace).
        start_timeout_s: a supervisor that has not reported RUNNING this long after it was
            started (or re-attached to) is ended and its job starts again as a new attempt.
    """

    def __init__(
        self,
        store: JobStore,
        subscribers: Subscribers,
        metrics: ServiceMetrics | None,
        namespace: str,
        start_timeout_s: float = 600.0,
    ) -> None:
        self.store, self.subscribers, self.metrics = store, subscribers, metrics
        self.namespace, self.start_timeout_s = namespace, start_timeout_s
        self._lock = threading.RLock()
        self.wake = threading.Condition(self._lock)
        self._running: dict[str, _Running] = {}
        self.capacity = Capacity()
        self._stopping = False
        self._draining = False  # handing jobs back: nothing new starts
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Recover what the store says was active, then start admitting queued jobs."""
        for job in self.store.in_states(JobState.STARTING, JobState.RUNNING):
            self._recover(job)
        end_orphans(self.namespace, set(self._running))
        sweep_buffers()
        self._thread = threading.Thread(
            target=self._schedule_loop, name="ps-scheduler", daemon=True
        )
        self._thread.start()

    def hand_back(self, timeout: float) -> list[str]:
        """Stop admitting; ask every running job to checkpoint where it is and stop, and wait
        up to ``timeout`` s for each to be queued again (it resumes from that checkpoint on
        the next start). Returns the jobs still running then: their supervisors go on, and
        the next start of the service re-attaches to them."""
        with self.wake:
            self._draining = True
            running = dict(self._running)
        deadline = time.monotonic() + timeout
        asked = [
            job_id
            for job_id, job in running.items()
            if job.handle.preempt(max(0.1, deadline - time.monotonic()))
        ]
        if running:
            log.info("asked %d running job(s) to checkpoint and stop: %s", len(asked), asked)
        for job in running.values():
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
        left = [job_id for job_id, job in running.items() if job.thread and job.thread.is_alive()]
        for job_id in left:
            log.warning(
                "job %s was not handed back within %.0f s; it keeps running and the next "
                "start of the service re-attaches to it",
                job_id,
                timeout,
            )
        return left

    def shutdown(self) -> None:
        """Stop admitting and following. Jobs still running keep running (detached
        supervisors; :meth:`hand_back` first to queue them again)."""
        with self.wake:
            self._stopping = True
            self.wake.notify_all()
        if self._thread:
            self._thread.join(timeout=5)

    def running(self, job_id: str) -> _Running | None:
        """The running job ``job_id`` (call with :attr:`wake` held)."""
        return self._running.get(job_id)

    def publish(self, job_id: str, event: Event) -> None:
        self.subscribers.publish(job_id, event)

    def publish_final(self, job: JobRecord) -> None:
        self.publish(job.job_id, JobEnded(job=job))

    def _recover(self, job: JobRecord) -> None:
        if job.spec is None:
            self._fail_unreadable(job)
            return
        handle = SupervisorHandle.attach(job.job_id, job.attempts, namespace=self.namespace)
        if handle is None:  # the service's fault, not the job's: it does not count as a failure
            cause = "the service restarted while the job was running"
            self._ended(self._requeue(job, cause, handback=True))
            return
        log.info("re-attached to job %s (attempt %d)", job.job_id, job.attempts)
        self.capacity.reserve(job.job_id, required_resources(job.spec))
        self._watch(job.job_id, _Running(handle, self.start_timeout_s))

    def _fail_unreadable(self, job: JobRecord) -> None:
        """A record that cannot be read back fails on its own; it blocks nothing."""
        log.error("job %s: %s", job.job_id, job.unreadable)
        failed = self._record(job.job_id, JobState.FAILED, error=job.unreadable)
        if failed:
            self.publish_final(failed)

    def _requeue(self, job: JobRecord, cause: str, handback: bool = False) -> JobRecord | None:
        """Queue a job whose attempt ended early again (it resumes from its last checkpoint),
        or fail it once ``training.max_failures`` failures are spent (the FAILED record is
        returned, for the caller to publish). ``handback``: the service ended the attempt (a
        restart, a stop), which is no failure of the job's."""
        budget = job.spec.training.max_failures
        if handback:
            log.info("job %s: %s; queued again, to resume from its checkpoint", job.job_id, cause)
            fields = {"handbacks": job.handbacks + 1, "error": f"queued again: {cause}"}
        elif job.failures <= budget:
            log.warning("job %s: %s; restarting from its last checkpoint", job.job_id, cause)
            fields = {"error": f"restarting: {cause}"}
        else:
            return self._record(
                job.job_id,
                JobState.FAILED,
                error=f"{cause}; gave up after {job.failures} failed attempts "
                f"(training.max_failures={budget})",
            )
        requeued = self._record(job.job_id, JobState.QUEUED, resume=1, **fields)
        if requeued is not None:
            self.publish(job.job_id, StateChanged(state=JobState.QUEUED))
        return requeued

    # -- scheduling --------------------------------------------------------------------------
    def _schedule_loop(self) -> None:
        while True:
            with self.wake:
                if self._stopping:
                    return
                try:
                    self._start_queued()
                except Exception:  # noqa: BLE001 - keep scheduling whatever one job did
                    log.exception("admission failed")
                self.wake.wait(timeout=1.0)

    def _start_queued(self) -> None:
        """Start queued jobs in FIFO order while the head of the queue fits."""
        for job in self.store.in_states(JobState.QUEUED):
            if self._draining:
                return
            if job.spec is None:
                self._fail_unreadable(job)
                continue
            need = required_resources(job.spec)
            if not self.capacity.fits(need):
                return  # strict FIFO: later jobs wait behind the head of the queue
            self.capacity.reserve(job.job_id, need)  # held from the moment it is chosen
            try:
                self._start(job)
            except BaseException:
                self.capacity.release(job.job_id)
                raise

    def _start(self, job: JobRecord) -> None:
        self.store.transition(
            job.job_id,
            JobState.STARTING,
            started_at=time.time(),
            attempts=job.attempts + 1,
            error="",
        )
        self.publish(job.job_id, StateChanged(state=JobState.STARTING))
        try:
            handle = SupervisorHandle.start(
                job.job_id,
                job.spec,
                job.run_dir,
                resume=job.resume or job.attempts > 0,
                detached=True,
                namespace=self.namespace,
                attempt=job.attempts + 1,
            )
        except Exception as exc:  # noqa: BLE001
            self.capacity.release(job.job_id)
            failed = self.store.transition(
                job.job_id, JobState.FAILED, error=f"could not start: {exc}"
            )
            self.publish_final(failed)
            return
        self._watch(job.job_id, _Running(handle, self.start_timeout_s))

    def _watch(self, job_id: str, running: _Running) -> None:
        with self._lock:
            self._running[job_id] = running
        running.thread = threading.Thread(
            target=self._monitor, args=(job_id, running), name=f"ps-monitor-{job_id}", daemon=True
        )
        running.thread.start()

    def _monitor(self, job_id: str, running: _Running) -> None:
        """Relay a job's events to the store and subscribers until it ends, then record the end."""
        outcome, lost = self._follow(job_id, running)
        if self._stopping:
            return  # the supervisor goes on; the next start of the service re-attaches to it
        if outcome is None:  # gone, hung or stuck: never two supervisors of one job at once
            running.handle.kill()
            remove_buffers([job_id])
        pause_at("recording-end")
        record = self._record_end(job_id, outcome, running.cancel_requested, lost)
        if outcome is not None:
            # Only once the end is recorded: a service that dies before this re-attaches to
            # the finished supervisor and records its end then.
            running.handle.kill()
        with self.wake:
            self._running.pop(job_id, None)
            self.capacity.release(job_id)
            self.wake.notify_all()
        self._ended(record)

    def _follow(self, job_id: str, running: _Running) -> tuple[Outcome | None, str]:
        """(how the supervisor ended, or None with why it is taken for lost)."""
        handle = running.handle
        try:
            for event in handle.events(stop=lambda: self._stopping or running.overdue()):
                if isinstance(event, StateChanged) and event.state == JobState.RUNNING:
                    running.start_by = None
                self._on_event(job_id, event)
            if self._stopping:
                return None, "the service stopped"
            if running.overdue():
                return None, (
                    f"its supervisor did not start the job within {self.start_timeout_s:.0f} s"
                )
            return handle.outcome(), ""
        except SupervisorLost as exc:
            return None, f"the job's supervisor died: {exc}"

    def _ended(self, record: JobRecord | None) -> None:
        """Tell the watchers (and telemetry) of a job that ended for good."""
        if record is None or not record.state.is_terminal():
            return
        if self.metrics:
            self.metrics.telemetry.end(record.job_id)
        self.publish_final(record)

    def _record_end(
        self, job_id: str, outcome: Outcome | None, cancel_requested: bool, lost: str
    ) -> JobRecord | None:
        """Record how an attempt ended: the job's end, or the job queued again (preempted, or
        its supervisor lost within the failure budget)."""
        if outcome is not None and outcome.kind == "succeeded":
            result = outcome.result
            progress = Progress(
                step=result.steps,
                total_steps=result.total_steps,
                epoch=result.epochs,
                train_loss=result.train_loss,
                samples=result.samples,
                samples_per_s=result.samples_per_s,
            )
            return self._record(job_id, JobState.SUCCEEDED, result=result, progress=progress)
        if cancel_requested or (outcome is not None and outcome.kind == "cancelled"):
            return self._record(job_id, JobState.CANCELLED, error="cancelled")
        if outcome is None:
            return self._requeue(self.store.get(job_id), lost)
        if outcome.kind == "preempted":
            return self._requeue(self.store.get(job_id), outcome.reason, handback=True)
        return self._record(job_id, JobState.FAILED, error=outcome.reason)

    def _record(self, job_id: str, state: JobState, **fields: Any) -> JobRecord | None:
        """Record a job's end; while the store refuses writes, retry until it accepts them
        (or the service stops): a job that ended is never left recorded as running."""
        while True:
            try:
                return self.store.transition(job_id, state, **fields)
            except StoreUnavailable as exc:
                if self._stopping:
                    return None
                log.warning("job %s ended %s; retrying to record it: %s", job_id, state.value, exc)
                time.sleep(STORE_RETRY_S)
            except Exception:  # noqa: BLE001 - already terminal (e.g. deleted meanwhile)
                log.exception("could not record the end of %s", job_id)
                return None

    def _on_event(self, job_id: str, event: Event) -> None:
        if self.metrics:
            self.metrics.telemetry.update(job_id, event)
        if isinstance(event, StateChanged) and event.state == JobState.STARTING:
            return  # published when the manager chose the job; the supervisor's is its history
        try:  # first the store, so that a watcher's GetJob after an event agrees with it
            self._store_event(job_id, event)
        except StoreUnavailable as exc:  # the store's trouble, not the job's: keep following it
            log.warning("job %s: could not record %s in the job store: %s", job_id, event.kind, exc)
        if isinstance(event, RELAYED):
            self.publish(job_id, event)

    def _store_event(self, job_id: str, event: Event) -> None:
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
        elif isinstance(event, Progress) and event.member is None:  # the job's, not a member's
            self.store.update(job_id, progress=event)
