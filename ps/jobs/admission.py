"""Admission: everything a job is checked against before its first actor exists, in one place.

- :func:`confine_paths` and :func:`resolve_path`, the one path rule: data files and ``init_from``
  models resolve inside the service's data root (no ``..`` escapes), or against the caller's
  directory for ``psctl run``;
- :func:`admit`, the cheap checks a submission gets: the data's headers (never a whole file in the
  RPC handler), the model's shapes and size from the spec (built on the ``meta`` device, nothing
  allocated), the warm-start model's shapes, the step plan;
- :func:`required_resources` and :func:`check_fits`, the single fit check against the cluster
  (CPUs, GPUs, and an estimate of the memory the job's actors need);
- :func:`prepare`, the full data load and the seeded initial network (run once, by the job's
  supervisor).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ps.errors import SpecError
from ps.jobs.errors import ResourceError
from ps.jobs.paths import confine_paths
from ps.jobs.plan import JobPlan
from ps.jobs.usercode import UserCodeNotAllowed, check_user_model
from ps.optim import state_buffers
from ps.optim.rows import ROW_RULES
from ps.spec import JobSpec
from ps.spec.model import CTR_TYPES, EmbeddingLayer
from workers.data import (
    DataInfo,
    Dataset,
    inspect_data,
    load_dataset,
    split_sizes,
)
from workers.data.dataset import stream_files, streams
from workers.data.scan import inspect_split_source
from workers.data.splits import held_out_fractions
from workers.data.streams import block_rows_for, stream_buffer_rows
from workers.models import build_model, read_export

FLOAT_BYTES = 4
WHOLE_CHECK_BYTES = 64 * 2**20  # a data file up to this size is read whole at submission


@dataclass(frozen=True)
class Admission:
    """A job that passed the checks: its spec with resolved paths, and what it will need.

    Attributes:
        spec: the spec with ``data.source`` and ``model.init_from`` made absolute.
        data: what the cheap look at the data found.
        n_params: the model's parameter count.
        resources: what the job's actors reserve on the cluster (``CPU``, ``GPU``).
        memory_bytes: an estimate of the memory its actors need in all.
    """

    spec: JobSpec
    data: DataInfo
    n_params: int
    resources: dict[str, float]
    memory_bytes: int


def admit(
    spec: JobSpec,
    root: Path | None = None,
    base: Path | None = None,
    allow_user_code: bool = True,
) -> Admission:
    """Every check that needs neither the whole data nor the cluster's size. A user module is
    built and run once on a batch shaped like the data, in a Ray task (never here).

    Raises:
        UserCodeNotAllowed: the spec runs user code and ``allow_user_code`` is off.
        SpecError: naming the key path: bad paths or data headers, a model that does not fit
            the data or is larger than ``ps.max_params``, data too small for the workers.
    """
    if spec.model.user_code and not allow_user_code:
        raise UserCodeNotAllowed(
            "this service runs no user code (model.module, model.loss_fn); an operator can "
            "allow it by starting the service with --allow-user-code"
        )
    spec = confine_paths(spec, root, base)
    data = inspect_data(spec.data, spec.model.loss)
    if spec.data.augment is not None and (len(data.inputs.shape) != 3 or data.inputs.tokens):
        raise SpecError(
            "data.augment", f"only for image data (channels, height, width); got {data.inputs}"
        )
    if data.rows is not None:
        JobPlan.make(spec, split_sizes(data.rows, spec.data)[0])
    if streams(spec.data):
        check_streaming(spec, data)
    if spec.model.layers is None and spec.model.type not in CTR_TYPES:
        check = check_user_model(spec, data.inputs, data.outputs)
        n_params, tables = check.n_params, check.tables
    else:
        n_params, tables = _check_network(spec, data), spec.model.type in CTR_TYPES
    if spec.ps.shards > n_params and not tables:  # with tables a shard may keep rows only
        raise SpecError(
            "ps.shards", f"{spec.ps.shards} shards for only {n_params} parameters (at most that)"
        )
    memory = memory_estimate(spec, n_params, data) + table_memory(spec, data)
    members = spec.ensemble.members if spec.ensemble else 1
    return Admission(spec, data, n_params, required_resources(spec), memory * members)


def check_whole_data(spec: JobSpec, limit: int = WHOLE_CHECK_BYTES) -> None:
    """Load a data file of at most ``limit`` bytes once, so that the checks that need every
    row (NaN or infinite values, targets that do not fit the loss, empty files) refuse at
    submission what ``psctl run`` refuses before training. A larger file (or a directory of
    images) is checked when its job loads it: the job then fails with the same message.

    Raises:
        SpecError: as :func:`workers.data.load_dataset`.
    """
    data = spec.data
    if not data.is_path or data.is_image_directory or streams(data):
        return
    if sum(os.path.getsize(p) for p in source_files(data)) > limit:
        return
    load_dataset(data, spec.model.loss, spec.seed)


def source_files(data) -> list[str]:
    """The files a file source reads (one, or a file set's)."""
    return list(stream_files(data).files) if data.is_file_set else [data.source]


def check_streaming(spec: JobSpec, data: DataInfo) -> None:
    """What streaming needs: the rows held in memory (validation, test, the learning curve's
    sample) within ``data.max_in_memory``, separate split sources like the training files, no
    ensemble (its members' bootstrap samples are drawn from data in memory).

    Raises:
        SpecError: naming the key.
    """
    d = spec.data
    if spec.ensemble is not None:
        raise SpecError(
            "ensemble",
            "ensemble members train on data held in memory: set data.streaming: false (or "
            "train one model on the stream)",
        )
    files = stream_files(d)
    for key in ("validation_source", "test_source"):
        if getattr(d, key) is not None:
            inspect_split_source(d, key, files)
    held = held_rows(spec, data.rows or 0)
    if held * files.row_bytes > d.max_in_memory:
        raise SpecError(
            "data.validation_split",
            f"a streamed job holds its validation and test rows in memory: about {held:,} rows "
            f"× {files.row_bytes} bytes ≈ {_gib(held * files.row_bytes)}, more than "
            f"data.max_in_memory = {_gib(d.max_in_memory)} (smaller splits, separate "
            "data.validation_source / data.test_source, or a larger data.max_in_memory)",
        )


def held_rows(spec: JobSpec, rows: int) -> int:
    """Rows a streamed job holds in memory: the held-out splits and the learning curve's
    sample of the training split."""
    validation, test = held_out_fractions(spec.data)
    return int(rows * (validation + test)) + spec.training.eval_train_rows


def _check_network(spec: JobSpec, data: DataInfo) -> int:
    """A layer spec's parameter count, from its shapes (nothing allocated)."""
    outputs = data.outputs if data.outputs is not None else _declared_outputs(spec)
    net = build_model(spec.model, data.inputs, outputs, device="meta")  # nothing allocated
    n_params = sum(p.numel() for p in net.parameters())
    if n_params > spec.ps.max_params:
        raise SpecError(
            "model.layers",
            f"the model has {n_params:,} parameters (≈{_gib(n_params * FLOAT_BYTES)} as float32), "
            f"more than ps.max_params = {spec.ps.max_params:,}",
        )
    if spec.model.init_from:
        _check_warm_start(spec.model.init_from, {k: v.shape for k, v in net.state_dict().items()})
    return n_params


def _declared_outputs(spec: JobSpec) -> int:
    if spec.model.type in CTR_TYPES:
        return 1
    return spec.model.layers[-1].units


def _check_warm_start(path: str, shapes: dict[str, torch.Size]) -> None:
    try:
        saved = {k: v.shape for k, v in read_export(path)["state_dict"].items()}
    except (ValueError, KeyError, AttributeError) as exc:
        raise SpecError("model.init_from", f"cannot warm-start: {exc}") from None
    if saved != shapes:
        raise SpecError(
            "model.init_from",
            f"cannot warm-start from {Path(path).name}: its shapes "
            f"{_describe_shapes(saved)} differ from this model's {_describe_shapes(shapes)}",
        )


def _describe_shapes(shapes: dict[str, torch.Size]) -> str:
    text = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
    return text if len(text) < 300 else text[:300] + "…"


def required_resources(spec: JobSpec) -> dict[str, float]:
    """What a job's actors ask Ray for in total (the supervisors ask for nothing; an ensemble
    needs its members' together)."""
    t, p = spec.training, spec.ps
    members = spec.ensemble.members if spec.ensemble else 1
    return {
        "CPU": members
        * (t.workers * t.worker_resources.num_cpus + p.shards * p.resources.num_cpus),
        "GPU": members
        * (t.workers * t.worker_resources.num_gpus + p.shards * p.resources.num_gpus),
    }


def memory_estimate(spec: JobSpec, n_params: int, data: DataInfo) -> int:
    """Bytes the job's processes need, roughly: each shard keeps its slice, the optimizer's state
    buffers, a gradient buffer, a sync accumulator and a scratch buffer; each worker its
    parameters, gradients and about as much again for activations; the supervisor a copy of the
    parameters; the data is held by the supervisor, once in the object store and once by the
    workers together."""
    buffers = state_buffers(spec.optimizer)
    per_param = (1 + buffers + 3) + 3 * spec.training.workers + 2
    data_bytes = 3 * (data.nbytes or 0)
    if data.rows is not None and streams(spec.data):  # held-out rows, and each reader's blocks
        row_bytes = (data.nbytes or 0) // max(1, data.rows)
        block = block_rows_for(spec.data.max_in_memory, row_bytes)
        per_worker = stream_buffer_rows(spec.data, spec.training.batch_size, block)
        readers = spec.training.workers * per_worker
        data_bytes = row_bytes * (held_rows(spec, data.rows) + readers)
    return n_params * FLOAT_BYTES * per_param + data_bytes


def table_memory(spec: JobSpec, data: DataInfo) -> int:
    """Bytes a built-in model's embedding table needs at most: rows are created on first
    touch, so it holds at most as many rows as the data has distinct ids (or buckets), each with
    the sparse optimizer's state and its key index; evaluations that read whole tables copy it.

    Raises:
        SpecError: the table's bound is beyond ``ps.max_table_bytes``.
    """
    if spec.model.type not in CTR_TYPES:
        return 0
    table = spec.model.table
    _check_row_budget(spec, data)
    rows = min(table.buckets, data.distinct_ids or table.buckets)
    bounded = table.max_rows is not None and table.max_rows < rows
    if bounded:
        rows = table.max_rows
    width = 1 + (table.dim if spec.model.type != "logistic" else 0)
    slots = 1 + len(ROW_RULES[spec.sparse_optimizer.name].state)
    # key and update count, index bucket (key and slot) at load ≤ 0.5, last update
    per_row = width * FLOAT_BYTES * slots + 52
    nbytes = rows * per_row
    if nbytes > spec.ps.max_table_bytes:
        key = "model.embedding.max_rows" if bounded else "model.embedding.buckets"
        raise SpecError(
            key,
            f"the embedding table may reach {rows:,} rows × {per_row} bytes ≈ {_gib(nbytes)}, "
            f"more than ps.max_table_bytes = {_gib(spec.ps.max_table_bytes)} (fewer "
            f"{'max_rows' if bounded else 'buckets'}, a smaller model.embedding.dim, or a larger "
            "ps.max_table_bytes)",
        )
    return nbytes


def _check_row_budget(spec: JobSpec, data: DataInfo) -> None:
    """A row budget must hold the rows one update touches: each shard's share at least one
    step's ids (batch_size × fields × workers, or the data's distinct ids where fewer: an upper
    bound), or an update would evict rows it just wrote."""
    table = spec.model.table
    if table.max_rows is None:
        return
    t = spec.training
    fields = len(spec.data.categorical) or spec.data.n_fields  # a CSV's columns, or synthetic
    touched = min(t.batch_size * fields * t.workers, data.distinct_ids or table.buckets)
    if table.max_rows // spec.ps.shards < touched:
        raise SpecError(
            "model.embedding.max_rows",
            f"{table.max_rows:,} rows over {spec.ps.shards} shard(s) is less than one step can "
            f"touch on a shard (up to {touched:,}: {t.batch_size} rows × {fields} fields × "
            f"{t.workers} workers, at most the data's distinct ids): raise it to at least "
            f"{touched * spec.ps.shards:,}",
        )


def check_fits(admission: Admission, cluster: dict[str, float]) -> None:
    """Raise :class:`ResourceError` if the job can never fit on ``cluster`` (its totals)."""
    for kind, need in admission.resources.items():
        have = cluster.get(kind, 0.0)
        if need > have:
            members = admission.spec.ensemble.members if admission.spec.ensemble else 1
            raise ResourceError(
                f"the job needs {need:g} {kind} (training.workers × worker_resources + ps.shards "
                f"× ps.resources{', × ensemble.members' if members > 1 else ''}) but the Ray "
                f"cluster has {have:g}"
            )
    memory = cluster.get("memory")
    if memory is not None and admission.memory_bytes > memory:
        raise ResourceError(
            f"the job needs about {_gib(admission.memory_bytes)} of memory ({admission.n_params:,} "
            f"parameters on {admission.spec.ps.shards} shard(s) and "
            f"{admission.spec.training.workers} worker(s), plus the data) but the Ray cluster has "
            f"{_gib(memory)}"
        )


@dataclass(frozen=True)
class Member:
    """One member of an ensemble job, as its supervisor trains it.

    Attributes:
        index: its number, from 0.
        split_seed: the ensemble's seed: every member splits the data alike (the member's own
            spec seed drives its initialization, batches and dropout).
        bootstrap: train on a bootstrap sample of the training split.
    """

    index: int
    split_seed: int
    bootstrap: bool


def bootstrap_rows(n: int, seed: int) -> np.ndarray:
    """``n`` row numbers drawn from ``range(n)`` with replacement (about 63% distinct)."""
    return np.random.default_rng([seed, 0xB007]).integers(0, n, n)


def prepare(
    spec: JobSpec, member: Member | None = None
) -> tuple[Dataset, torch.nn.Module, JobPlan]:
    """Load the data (paths already confined), build the seeded initial model and the job's
    step plan for the data; an ensemble member's training split is its bootstrap sample.

    Raises:
        SpecError: problems only the full data shows (values, labels, token ids beyond the
            embedding), a warm-start model that does not load.
    """
    split_seed = spec.seed if member is None else member.split_seed
    t = spec.training
    data = load_dataset(
        spec.data, spec.model.loss, split_seed, None, spec.model.table.buckets, t.eval_train_rows
    )
    if member is not None and member.bootstrap:
        rows = bootstrap_rows(len(data.x_train), spec.seed)
        data = dataclasses.replace(data, x_train=data.x_train[rows], y_train=data.y_train[rows])
    layers = spec.model.layers
    if data.inputs.tokens and layers and isinstance(layers[0], EmbeddingLayer):
        top = max(int(a.max()) for a in (data.x_train, data.x_val, data.x_test) if a.size)
        if top >= layers[0].input_dim:
            raise SpecError(
                "model.layers.0.input_dim",
                f"the data has token id {top}; the embedding holds {layers[0].input_dim}",
            )
    torch.manual_seed(spec.seed)
    net = build_model(spec.model, data.inputs, data.n_outputs)
    if spec.model.init_from:
        try:
            net.load_state_dict(read_export(spec.model.init_from)["state_dict"])
        except (ValueError, RuntimeError, KeyError) as exc:
            raise SpecError("model.init_from", f"cannot warm-start: {exc}") from None
    return data, net, JobPlan.make(spec, data.n_train, ledger_items(spec, data))


def ledger_items(spec: JobSpec, data: Dataset) -> tuple[int, ...]:
    """The training rows per work item where a ledger hands the items out (an async streamed
    job), else ()."""
    if data.stream is None or spec.training.mode != "async":
        return ()
    return data.stream.train_rows


def training_parts(data: Dataset) -> list:
    """What the workers read the training split from, to be put once into the object store:
    the features, targets and ids, or the stream (streamed data: paths and counts)."""
    if data.stream is not None:
        return [data.stream]
    return [data.x_train, data.y_train] + ([] if data.ids_train is None else [data.ids_train])


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:,.1f} GiB" if nbytes >= 2**28 else f"{nbytes / 2**20:,.1f} MiB"
