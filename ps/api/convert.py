"""The one place where specs, job records and events meet the ps.v1 protobuf messages.

Field names are the same on both sides: a spec travels proto → dict (only the fields that were
set) → :func:`ps.spec.parse_spec` (the validator fills the rest), and back as a dict without
``None`` values → proto.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from ps.errors import SpecError
from ps.jobs.events import (
    Evaluation,
    Event,
    JobEnded,
    JobResult,
    Progress,
    Restored,
    StateChanged,
    WorkerReplaced,
)
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


SIZES = ("kernel_size", "stride", "dilation", "pool_size")


def spec_to_proto(spec: JobSpec) -> pb.JobSpec:
    """The spec as a message (every default filled in)."""
    data = _drop_none(spec.to_dict())
    for layer in data["model"].get("layers", []):
        for key in SIZES:
            if key in layer:
                layer[key] = [layer[key]] if isinstance(layer[key], int) else layer[key]
        if "padding" in layer:
            layer["padding"] = str(layer["padding"])
    return json_format.ParseDict(data, pb.JobSpec())


def proto_to_spec(msg: pb.JobSpec) -> JobSpec:
    """Validate a spec message (only the fields the client set; the rest take defaults).

    Raises:
        SpecError: naming the key path.
    """
    data = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    model = data.get("model", {})
    for layer in model.get("layers", []):
        for key in SIZES:
            if isinstance(layer.get(key), list) and len(layer[key]) == 1:
                layer[key] = layer[key][0]  # one size for every axis
        padding = layer.get("padding")
        if isinstance(padding, str) and padding.isdigit():
            layer["padding"] = int(padding)
    if "kwargs" in model:
        model["kwargs"] = _whole_numbers(model["kwargs"])
    return parse_spec(data)


def _whole_numbers(value: Any) -> Any:
    """protobuf's Struct holds every number as a double: whole ones become integers again."""
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def state_to_proto(state: JobState | str) -> int:
    return pb.JobState.Value(f"JOB_STATE_{JobState(state).value}")


def state_from_proto(value: int) -> JobState:
    """The state a ``JobState`` enum value names.

    Raises:
        SpecError: an unknown value or ``JOB_STATE_UNSPECIFIED``.
    """
    try:
        return JobState(pb.JobState.Name(value).removeprefix("JOB_STATE_"))
    except ValueError:
        names = ", ".join(pb.JobState.keys()[1:])
        raise SpecError("states", f"unknown job state {value} (use {names})") from None


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
    "train_auc",
    "val_auc",
)
_RESULT = (
    "stop_reason",
    "steps",
    "total_steps",
    "skipped_updates",
    "exported_step",
    "epochs",
    "wall_time_s",
    "samples_per_s",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "train_auc",
    "val_auc",
    "test_auc",
    "table_rows",
)


def _pick(source: object, keys: tuple[str, ...]) -> dict[str, Any]:
    values = {k: getattr(source, k) for k in keys}
    return {k: v for k, v in values.items() if v is not None}


def result_to_proto(result: JobResult) -> pb.JobResult:
    return pb.JobResult(
        **_pick(result, _RESULT), result_json=json.dumps(result.to_dict(), default=str)
    )


def job_to_proto(job: JobRecord) -> pb.Job:
    msg = pb.Job(
        job_id=job.job_id,
        name=job.name,
        state=state_to_proto(job.state),
        created_at=job.created_at,
        started_at=job.started_at or 0.0,
        finished_at=job.finished_at or 0.0,
        error=job.error or job.unreadable,
        run_dir=job.run_dir,
        attempts=job.attempts,
        handbacks=job.handbacks,
        unreadable=bool(job.unreadable),
    )
    if job.spec is not None:
        msg.spec.CopyFrom(spec_to_proto(job.spec))
    if job.progress:
        msg.progress.CopyFrom(pb.Progress(**_pick(job.progress, _PROGRESS)))
    if job.result:
        msg.result.CopyFrom(result_to_proto(job.result))
    return msg


def event_to_proto(event: Event) -> pb.JobEvent:
    """A job event as a message (events without a message of their own are not sent)."""
    msg = pb.JobEvent(job_id=event.job_id, time=event.time)
    if event.member is not None:
        msg.member = event.member
    if isinstance(event, StateChanged):
        msg.state = state_to_proto(event.state)
        msg.total_steps = event.total_steps
    elif isinstance(event, Progress):
        msg.progress.CopyFrom(pb.Progress(**_pick(event, _PROGRESS)))
    elif isinstance(event, Evaluation):
        msg.evaluation.CopyFrom(pb.Evaluation(**_pick(event, _EVALUATION)))
    elif isinstance(event, Restored):
        msg.restored.CopyFrom(pb.Restored(step=event.step, reason=event.reason))
    elif isinstance(event, WorkerReplaced):
        msg.worker_replaced.CopyFrom(
            pb.WorkerReplaced(worker=event.worker, step=event.step, reason=event.reason)
        )
    elif isinstance(event, JobEnded):
        msg.finished.CopyFrom(job_to_proto(event.job))
    return msg


def proto_to_event(msg: pb.JobEvent) -> Event | None:
    """The typed event of a message (``finished`` is returned as None: read ``msg.finished``)."""
    kind = msg.WhichOneof("event")
    common = {
        "job_id": msg.job_id,
        "time": msg.time,
        "member": msg.member if msg.HasField("member") else None,
    }
    if kind == "state":
        return StateChanged(
            state=state_from_proto(msg.state), total_steps=msg.total_steps, **common
        )
    if kind == "progress":
        return Progress(**_fields(msg.progress, _PROGRESS), **common)
    if kind == "evaluation":
        return Evaluation(**_fields(msg.evaluation, _EVALUATION), **common)
    if kind == "restored":
        return Restored(step=msg.restored.step, reason=msg.restored.reason, **common)
    if kind == "worker_replaced":
        r = msg.worker_replaced
        return WorkerReplaced(worker=r.worker, step=r.step, reason=r.reason, **common)
    return None


def _fields(msg: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The named fields of a message; optional ones that are not set are left out."""
    by_name = msg.DESCRIPTOR.fields_by_name
    return {k: getattr(msg, k) for k in keys if not by_name[k].has_presence or msg.HasField(k)}
