"""A small Python client for the training service (the CLI uses it).

client = Client("127.0.0.1:50051", token="...")
job = client.submit("examples/digits.yaml", job_id="digits-1")
for event in client.watch(job.job_id): ...
client.export(job.job_id, "model.pt")
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from ps.api.convert import spec_to_proto, state_from_proto, state_to_proto
from ps.jobs.state import JobState
from ps.jobs.usercode import pack_code
from ps.spec import JobSpec, load_spec, parse_spec
from ps.v1 import training_pb2 as pb
from ps.v1 import training_pb2_grpc

DEFAULT_SERVER = "127.0.0.1:50051"


__all__ = ["Client", "JobState"]


class Client:
    """Talks to a TrainingService.

    Args:
        server: ``host:port`` (default: env ``PS_SERVER``, else 127.0.0.1:50051).
        token: bearer token (default: env ``PS_TOKEN``).
        tls_ca: PEM file of the CA (or self-signed certificate) to trust; enables TLS.
        timeout: seconds for unary calls.
    """

    @staticmethod
    def state(job: pb.Job) -> JobState:
        """A job message's state as the named enum (``JobState.SUCCEEDED``, equal to the string
        ``"SUCCEEDED"``), not the proto's integer."""
        return state_from_proto(job.state)

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        tls_ca: str | Path | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.server = server or os.environ.get("PS_SERVER") or DEFAULT_SERVER
        token = token if token is not None else os.environ.get("PS_TOKEN")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if tls_ca:
            creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
            self.channel = grpc.secure_channel(self.server, creds)
        else:
            self.channel = grpc.insecure_channel(self.server)
        self.stub = training_pb2_grpc.TrainingServiceStub(self.channel)
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def submit(
        self, spec: str | Path | dict[str, Any] | JobSpec, job_id: str | None = None
    ) -> pb.Job:
        """Submit a spec (a file path, plain data or a JobSpec); validated locally first. A
        ``model.code`` directory (relative to the current directory) travels with it."""
        if isinstance(spec, str | Path):
            spec = load_spec(spec)
        spec = parse_spec(spec)  # a JobSpec passes through unparsed
        archive = pack_code(spec.model.code) if spec.model.code else b""
        request = pb.SubmitJobRequest(
            spec=spec_to_proto(spec), job_id=job_id or "", code_archive=archive
        )
        return self.stub.SubmitJob(request, metadata=self._metadata, timeout=self.timeout).job

    def get(self, job_id: str) -> pb.Job:
        return self.stub.GetJob(
            pb.GetJobRequest(job_id=job_id), metadata=self._metadata, timeout=self.timeout
        ).job

    def list(self, states: list[str] | None = None, page_size: int = 50) -> Iterator[pb.Job]:
        """Every job, newest first (pages are fetched as needed)."""
        token = ""
        while True:
            request = pb.ListJobsRequest(
                states=[state_to_proto(s) for s in states or []],
                page_size=page_size,
                page_token=token,
            )
            reply = self.stub.ListJobs(request, metadata=self._metadata, timeout=self.timeout)
            yield from reply.jobs
            token = reply.next_page_token
            if not token:
                return

    def cancel(self, job_id: str) -> pb.Job:
        return self.stub.CancelJob(
            pb.CancelJobRequest(job_id=job_id), metadata=self._metadata, timeout=self.timeout
        ).job

    def resume(self, job_id: str) -> pb.Job:
        """Continue a FAILED or CANCELLED job from its last checkpoint."""
        request = pb.ResumeJobRequest(job_id=job_id)
        return self.stub.ResumeJob(request, metadata=self._metadata, timeout=self.timeout).job

    def delete(self, job_id: str) -> None:
        self.stub.DeleteJob(
            pb.DeleteJobRequest(job_id=job_id), metadata=self._metadata, timeout=self.timeout
        )

    def watch(self, job_id: str) -> Iterator[pb.JobEvent]:
        """The job's events until it ends (the last one carries the finished job)."""
        for reply in self.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=self._metadata):
            yield reply.event

    def export(self, job_id: str, path: str | Path, fmt: str = "pt") -> Path:
        """Download a succeeded job's model to ``path`` (written atomically): ``pt`` (model.pt,
        for ``workers.models.load_model``) or ``pt2`` (a torch.export program)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        replies = self.stub.ExportModel(
            pb.ExportModelRequest(job_id=job_id, format=fmt), metadata=self._metadata
        )
        try:
            # The first reply before any file: a refused export (not found, not finished,
            # an unknown format) writes nothing.
            first = next(replies, None)
            with tmp.open("wb") as f:
                if first is not None:
                    f.write(first.chunk)
                for reply in replies:
                    f.write(reply.chunk)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path
