"""The scheduler: starts queued jobs when the cluster has room, follows their supervisors
through :class:`ps.jobs.handle.SupervisorHandle`, records how they end, and recovers the jobs
that were active when the service last stopped.

It holds the running jobs (their handles and reserved resources); the job manager
(:mod:`ps.jobs.manager`) takes requests and asks it to cancel a running job.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import ray

from ps.jobs.admission import required_resources
from ps.jobs.errors import ClusterUnavailable, StoreUnavailable
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

    def __init__(
        self, handle: SupervisorHandle, reserved: dict[str, float], start_timeout_s: float
    ) -> None:
        self.handle = handle
        self.reserved = reserved
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
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Recover what the store says was active, then start admitting queued jobs."""
        for job in self.store.in_states(JobState.STARTING, JobState.RUNNING):
            self._recover(job)
        self._end_orphans()
        self._thread = threading.Thread(
            target=self._schedule_loop, name="ps-scheduler", daemon=True
        )
        self._thread.start()

    def shutdown(self) -> None:
        """Stop admitting and following. Running jobs keep running (detached supervisors)."""
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
        if handle is None:
            self._retry_or_fail(job, "the service restarted while the job was running")
            return
        log.info("re-attached to job %s (attempt %d)", job.job_id, job.attempts)
        self._watch(job.job_id, self._running_job(handle, required_resources(job.spec)))

    def _end_orphans(self) -> None:
        """End the actors of this namespace that no active job claims (a service's earlier
        life left them: the supervisor of a job recorded as ended, or of a deleted one)."""
        active = set(self._running)
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name = entry["name"]
            if entry["namespace"] != self.namespace or not name.startswith("ps:"):
                continue
            owner = name[3:].split(":")[0]
            if owner in active or any(owner.startswith(f"{job}.m") for job in active):
                continue
            log.warning("ending actor %s: no active job claims it (left by an earlier run)", name)
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)

    def _fail_unreadable(self, job: JobRecord) -> None:
        """A record that cannot be read back fails on its own; it blocks nothing."""
        log.error("job %s: %s", job.job_id, job.unreadable)
        failed = self._finish(job.job_id, JobState.FAILED, error=job.unreadable)
        if failed:
            self.publish_final(failed)

    def _retry_or_fail(self, job: JobRecord, cause: str) -> JobRecord | None:
        """Requeue a job whose supervisor is gone (it resumes from its last checkpoint), or fail it
        once ``training.max_failures`` restarts are spent."""
        budget = job.spec.training.max_failures
        if job.attempts <= budget:
            log.warning("job %s: %s; restarting from its last checkpoint", job.job_id, cause)
            requeued = self.store.transition(
                job.job_id, JobState.QUEUED, resume=1, error=f"restarting: {cause}"
            )
            self.publish(job.job_id, StateChanged(state=JobState.QUEUED))
            return requeued
        failed = self.store.transition(
            job.job_id,
            JobState.FAILED,
            error=f"{cause}; gave up after {job.attempts} attempts (training.max_failures={budget})",
        )
        self.publish_final(failed)
        return None

    # -- scheduling --------------------------------------------------------------------------
    def cluster_resources(self) -> dict[str, float]:
        try:
            return ray.cluster_resources()
        except Exception as exc:  # noqa: BLE001
            raise ClusterUnavailable(f"the Ray cluster is unreachable: {exc}") from None

    def _free(self) -> dict[str, float]:
        free = dict(self.cluster_resources())
        for running in self._running.values():
            for kind, amount in running.reserved.items():
                free[kind] = free.get(kind, 0.0) - amount
        return free

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
            failed = self.store.transition(
                job.job_id, JobState.FAILED, error=f"could not start: {exc}"
            )
            self.publish_final(failed)
            return
        self._watch(job.job_id, self._running_job(handle, need))

    def _running_job(self, handle: SupervisorHandle, need: dict[str, float]) -> _Running:
        return _Running(handle, need, self.start_timeout_s)

    def _watch(self, job_id: str, running: _Running) -> None:
        with self._lock:
            self._running[job_id] = running
        running.thread = threading.Thread(
            target=self._monitor, args=(job_id, running), name=f"ps-monitor-{job_id}", daemon=True
        )
        running.thread.start()

    def _monitor(self, job_id: str, running: _Running) -> None:
        """Relay a job's events to the store and subscribers until it ends, then record the end."""
        handle, outcome, lost = running.handle, None, ""
        try:
            for event in handle.events(stop=lambda: self._stopping or running.overdue()):
                if isinstance(event, StateChanged) and event.state == JobState.RUNNING:
                    running.start_by = None
                self._on_event(job_id, event)
            if self._stopping:
                return
            if running.overdue():
                lost = f"its supervisor did not start the job within {self.start_timeout_s:.0f} s"
            else:
                outcome = handle.outcome()
        except SupervisorLost as exc:
            lost = f"the job's supervisor died: {exc}"
        handle.kill()
        if outcome is None and not running.cancel_requested and not self._stopping:
            with self.wake:
                self._running.pop(job_id, None)
                requeued = self._retry_or_fail(self.store.get(job_id), lost)
                self.wake.notify_all()
            if requeued is None and self.metrics:
                self.metrics.telemetry.end(job_id)
            return  # requeued: the scheduler starts it again, resuming from its last checkpoint
        final = self._record_end(job_id, outcome, running.cancel_requested, lost)
        with self.wake:
            self._running.pop(job_id, None)
            self.wake.notify_all()
        if self.metrics:
            self.metrics.telemetry.end(job_id)
        if final:
            self.publish_final(final)

    def _record_end(
        self, job_id: str, outcome: Outcome | None, cancel_requested: bool, lost: str
    ) -> JobRecord | None:
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
            return self._finish(job_id, JobState.SUCCEEDED, result=result, progress=progress)
        if cancel_requested or (outcome is not None and outcome.kind == "cancelled"):
            return self._finish(job_id, JobState.CANCELLED, error="cancelled")
        return self._finish(job_id, JobState.FAILED, error=outcome.reason if outcome else lost)

    def _finish(self, job_id: str, state: JobState, **fields: Any) -> JobRecord | None:
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
