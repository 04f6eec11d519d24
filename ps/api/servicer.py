"""TrainingService: the only place where domain errors become gRPC status codes."""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
from collections.abc import Callable, Iterator

import grpc

from ps.api.convert import event_to_proto, job_to_proto, proto_to_spec, state_from_proto
from ps.errors import SpecError, clip
from ps.jobs.errors import (
    ClusterUnavailable,
    JobExists,
    JobNotFinished,
    JobNotFound,
    QueueFull,
    ResourceError,
    StoreUnavailable,
    TerminalState,
)
from ps.jobs.events import JobEnded, StateChanged
from ps.jobs.manager import JobManager
from ps.jobs.usercode import UserCodeNotAllowed
from ps.v1 import training_pb2 as pb
from ps.v1 import training_pb2_grpc

log = logging.getLogger(__name__)

STATUS = {
    SpecError: grpc.StatusCode.INVALID_ARGUMENT,
    JobNotFound: grpc.StatusCode.NOT_FOUND,
    JobExists: grpc.StatusCode.ALREADY_EXISTS,
    ResourceError: grpc.StatusCode.FAILED_PRECONDITION,
    JobNotFinished: grpc.StatusCode.FAILED_PRECONDITION,
    TerminalState: grpc.StatusCode.FAILED_PRECONDITION,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ClusterUnavailable: grpc.StatusCode.UNAVAILABLE,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    UserCodeNotAllowed: grpc.StatusCode.PERMISSION_DENIED,
}
CHUNK = 1 << 20
WATCH_POLL_S = 1.0
MAX_DETAILS = 4000  # status details travel in metadata (limited to a few KB)
MAX_PAGE_SIZE = 500


def status_for(exc: BaseException) -> grpc.StatusCode:
    for kind, code in STATUS.items():
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    code = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("internal error")
        message = f"internal error: {type(exc).__name__}: {exc}"
    else:
        message = str(exc)
        others = getattr(exc, "others", None)
        if others:
            message += "; also: " + "; ".join(others)
    if len(message) > MAX_DETAILS:
        message = message[:MAX_DETAILS] + f"… ({len(message):,} characters)"
    context.abort(code, message)


def _mapped(method: Callable) -> Callable:
    """Run a unary method, turning every exception into a status code (never a hung call)."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

    return wrapper


def _mapped_stream(method: Callable) -> Callable:
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            yield from method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

    return wrapper


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    @_mapped
    def SubmitJob(self, request, context):
        job = self.manager.submit(
            proto_to_spec(request.spec),
            request.job_id or None,
            resume=request.resume,
            code_archive=request.code_archive or None,
        )
        return pb.SubmitJobResponse(job=job_to_proto(job))

    @_mapped
    def GetJob(self, request, context):
        return pb.GetJobResponse(job=job_to_proto(self.manager.get(request.job_id)))

    @_mapped
    def ListJobs(self, request, context):
        states = [state_from_proto(s) for s in request.states] or None
        size = min(request.page_size or 50, MAX_PAGE_SIZE)
        before = _page_token(request.page_token)
        jobs = self.manager.list(states, size + 1, before)
        token = str(jobs[size - 1].seq) if len(jobs) > size else ""
        return pb.ListJobsResponse(
            jobs=[job_to_proto(j) for j in jobs[:size]], next_page_token=token
        )

    @_mapped
    def CancelJob(self, request, context):
        return pb.CancelJobResponse(job=job_to_proto(self.manager.cancel(request.job_id)))

    @_mapped
    def ResumeJob(self, request, context):
        return pb.ResumeJobResponse(job=job_to_proto(self.manager.resume(request.job_id)))

    @_mapped
    def DeleteJob(self, request, context):
        self.manager.delete(request.job_id)
        return pb.DeleteJobResponse()

    @_mapped_stream
    def WatchJob(self, request, context) -> Iterator[pb.WatchJobResponse]:
        job_id = request.job_id
        events = self.manager.subscribe(job_id)
        try:
            job = self.manager.get(job_id)  # after subscribing: nothing falls in between
            if job.state.is_terminal():
                yield pb.WatchJobResponse(event=event_to_proto(JobEnded(job_id=job_id, job=job)))
                return
            total = job.progress.total_steps if job.progress else 0
            current = StateChanged(job_id=job_id, state=job.state, total_steps=total)
            yield pb.WatchJobResponse(event=event_to_proto(current))
            while context.is_active():
                try:
                    event = events.get(timeout=WATCH_POLL_S)
                except queue.Empty:
                    continue
                yield pb.WatchJobResponse(event=event_to_proto(event))
                if isinstance(event, JobEnded):
                    return
        finally:
            with contextlib.suppress(Exception):
                self.manager.unsubscribe(job_id, events)

    @_mapped_stream
    def ExportModel(self, request, context) -> Iterator[pb.ExportModelResponse]:
        path = self.manager.model_path(request.job_id, request.format or "pt")
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield pb.ExportModelResponse(chunk=chunk)


def _page_token(token: str) -> int | None:
    """The sequence number a page token carries (None: the first page).

    Raises:
        SpecError: anything but a token this service handed out.
    """
    if not token:
        return None
    if not (token.isascii() and token.isdigit() and len(token) <= 18):
        raise SpecError("page_token", f"invalid page token {clip(token, 40)}")
    return int(token)
