"""TrainingService: the only place where domain errors become gRPC status codes."""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
from collections.abc import Callable, Iterator

import grpc

from ps.api.convert import event_to_proto, job_to_proto, proto_to_spec_dict, state_from_proto
from ps.errors import SpecError
from ps.jobs.errors import (
    ClusterUnavailable,
    JobExists,
    JobNotFinished,
    JobNotFound,
    QueueFull,
    ResourceError,
    TerminalState,
)
from ps.jobs.manager import JobManager
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
}
CHUNK = 1 << 20
WATCH_POLL_S = 1.0


def status_for(exc: BaseException) -> grpc.StatusCode:
    for kind, code in STATUS.items():
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    code = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("internal error")
        context.abort(code, f"internal error: {type(exc).__name__}: {exc}")
    message = str(exc)
    others = getattr(exc, "others", None)
    if others:
        message += "; also: " + "; ".join(others)
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
            proto_to_spec_dict(request.spec), request.job_id or None, resume=request.resume
        )
        return pb.SubmitJobResponse(job=job_to_proto(job))

    @_mapped
    def GetJob(self, request, context):
        return pb.GetJobResponse(job=job_to_proto(self.manager.get(request.job_id)))

    @_mapped
    def ListJobs(self, request, context):
        states = [state_from_proto(s) for s in request.states] or None
        size = min(request.page_size or 50, 500)
        before = None
        if request.page_token:
            try:
                before = int(request.page_token)
            except ValueError:
                raise SpecError(
                    "page_token", f"invalid page token {request.page_token!r}"
                ) from None
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
                yield pb.WatchJobResponse(
                    event=event_to_proto({"type": "finished", "job_id": job_id, "job": job})
                )
                return
            yield pb.WatchJobResponse(
                event=event_to_proto({"type": "state", "job_id": job_id, "state": job.state.value})
            )
            while context.is_active():
                try:
                    event = events.get(timeout=WATCH_POLL_S)
                except queue.Empty:
                    continue
                yield pb.WatchJobResponse(event=event_to_proto(event))
                if event["type"] == "finished":
                    return
        finally:
            with contextlib.suppress(Exception):
                self.manager.unsubscribe(job_id, events)

    @_mapped_stream
    def ExportModel(self, request, context) -> Iterator[pb.ExportModelResponse]:
        path = self.manager.model_path(request.job_id)
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield pb.ExportModelResponse(chunk=chunk)
