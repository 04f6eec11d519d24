"""Conversions between the spec model / job records and the ps.v1 protobuf messages.

Field names are the same on both sides, so the spec travels as plain data: proto → dict (only
the fields that were set) → ``parse_spec``, and spec → dict without ``None`` → proto.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from ps.jobs.state import JobState
from ps.jobs.store import JobRecord
from ps.spec import JobSpec, parse_spec
from ps.v1 import training_pb2 as pb


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def spec_to_proto(spec: JobSpec | dict[str, Any]) -> pb.JobSpec:
    """The spec as a message; a dict is validated first (names like ``relu`` become mappings)."""
    return json_format.ParseDict(_drop_none(parse_spec(spec).to_dict()), pb.JobSpec())


def proto_to_spec_dict(msg: pb.JobSpec) -> dict[str, Any]:
    """The spec as plain data, with only the fields the client set (the validator fills the rest)."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def state_to_proto(state: JobState | str) -> int:
    return pb.JobState.Value(f"JOB_STATE_{JobState(state).value}")


def state_from_proto(value: int) -> JobState:
    name = pb.JobState.Name(value).removeprefix("JOB_STATE_")
    return JobState(name)


_PROGRESS = ("step", "total_steps", "epoch", "train_loss", "samples", "samples_per_s", "grad_norm")
_EVALUATION = (
    "step",
    "epoch",
    "learning_rate",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "generalization_gap",
)
_RESULT = (
    "stop_reason",
    "steps",
    "epochs",
    "wall_time_s",
    "samples_per_s",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
)


def _pick(source: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: source[k] for k in keys if source.get(k) is not None}


def job_to_proto(job: JobRecord) -> pb.Job:
    msg = pb.Job(
        job_id=job.job_id,
        name=job.name,
        state=state_to_proto(job.state),
        spec=spec_to_proto(job.spec),
        created_at=job.created_at,
        started_at=job.started_at or 0.0,
        finished_at=job.finished_at or 0.0,
        error=job.error,
        run_dir=job.run_dir,
        attempts=job.attempts,
    )
    if job.progress:
        msg.progress.CopyFrom(pb.Progress(**_pick(job.progress, _PROGRESS)))
    if job.result:
        msg.result.CopyFrom(
            pb.JobResult(
                **_pick(job.result, _RESULT), result_json=json.dumps(job.result, default=str)
            )
        )
    return msg


def event_to_proto(event: dict[str, Any]) -> pb.JobEvent:
    msg = pb.JobEvent(job_id=event["job_id"], time=event.get("time", 0.0))
    kind = event["type"]
    if kind == "state":
        msg.state = state_to_proto(event["state"])
    elif kind == "progress":
        msg.progress.CopyFrom(pb.Progress(**_pick(event, _PROGRESS)))
    elif kind == "evaluation":
        msg.evaluation.CopyFrom(pb.Evaluation(**_pick(event, _EVALUATION)))
    elif kind == "finished":
        msg.finished.CopyFrom(job_to_proto(event["job"]))
    return msg
