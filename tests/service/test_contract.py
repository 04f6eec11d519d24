"""The gRPC contract: generated code is current, every spec field maps both ways, error codes."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import grpc
from google.protobuf.descriptor import FieldDescriptor
from pydantic import BaseModel

from ps.api.convert import proto_to_spec, spec_to_proto
from ps.api.servicer import status_for
from ps.errors import PSError, SpecError
from ps.jobs.errors import (
    ClusterUnavailable,
    JobExists,
    JobNotFinished,
    JobNotFound,
    QueueFull,
    ResourceError,
)
from ps.optim import RULES
from ps.optim.rows import ROW_RULES
from ps.spec import JobSpec, parse_spec
from ps.v1 import training_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)], check=True
    )
    fresh, checked_in = tmp_path / "ps" / "v1", ROOT / "ps" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(p.name for p in checked_in.iterdir() if p.name != "__pycache__")
    _, mismatch, errors = filecmp.cmpfiles(fresh, checked_in, names, shallow=False)
    assert not mismatch and not errors, f"regenerate with: python proto/generate.py ({mismatch})"


def _spec_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        kinds = [a for a in getattr(info.annotation, "__args__", ()) or (info.annotation,)]
        nested = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if path == "model.layers":
            from typing import get_args

            from ps.spec import Layer

            kinds = get_args(get_args(Layer)[0])  # the union inside Annotated[..., Field]
            out |= {f"{path}.{p}" for m in kinds for p in _spec_paths(m)}
        elif name == "optimizer":
            hypers = {h.name for rule in RULES.values() for h in rule.hypers}
            out |= {f"{path}.{h}" for h in hypers | {"name", "lr", "clip_grad_norm"}}
            out |= {
                f"{path}.schedule.{k}"
                for k in ("type", "step_size", "gamma", "t_max", "min_lr", "warmup_steps")
            }
        elif name == "sparse_optimizer":
            hypers = {h.name for rule in ROW_RULES.values() for h in rule.hypers}
            out |= {f"{path}.{h}" for h in hypers | {"name", "lr"}}
        elif name == "regularization":
            out |= {f"{path}.{k}" for k in ("l1", "l2", "l1_mode")}
        elif nested:
            out |= _spec_paths(nested[0], f"{path}.")
        else:
            out.add(path)
    return out


def _proto_paths(descriptor, prefix: str = "") -> set[str]:
    out = set()
    for f in descriptor.fields:
        path = f"{prefix}{f.name}"
        if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.full_name.startswith(
            "google.protobuf."
        ):
            out.add(path)  # a well-known type (Struct: model.kwargs) is one field
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            out |= _proto_paths(f.message_type, f"{path}.")
        else:
            out.add(path)
    return out


def test_every_spec_field_has_a_proto_field_and_back():
    assert _spec_paths(JobSpec) == _proto_paths(pb.JobSpec.DESCRIPTOR)


FULL = {
    "name": "everything",
    "seed": 7,
    "data": {
        "source": "data/x.csv",
        "target": "label",
        "n_samples": 500,
        "n_features": 5,
        "n_classes": 3,
        "noise": 0.2,
        "validation_split": 0.15,
        "test_split": 0.1,
        "shuffle": False,
        "normalize": "minmax",
    },
    "model": {
        "layers": [
            {
                "type": "dense",
                "units": 8,
                "activation": {"type": "leaky_relu", "negative_slope": 0.2, "pieces": 3},
                "init": {"type": "uniform", "mean": 0.1, "std": 0.2, "low": -0.3, "high": 0.4},
                "bias_init": {"type": "normal", "std": 0.01},
                "bias": False,
            },
            {"type": "dropout", "rate": 0.25},
            {"type": "dense", "units": 3},
        ],
        "loss": "cross_entropy",
        "init_from": "models/start.pt",
    },
    "optimizer": {
        "name": "rmsprop",
        "lr": 0.02,
        "alpha": 0.9,
        "eps": 1e-6,
        "momentum": 0.5,
        "centered": True,
        "schedule": {"type": "warmup_cosine", "warmup_steps": 3, "t_max": 30, "min_lr": 0.001},
        "clip_grad_norm": 2.5,
    },
    "regularization": {"l2": 0.01, "l1": 0.001, "l1_mode": "proximal"},
    "training": {
        "workers": 3,
        "mode": "ssp",
        "staleness": 4,
        "batch_size": 16,
        "epochs": 7,
        "max_steps": 0,
        "eval_every_steps": 5,
        "early_stopping": {
            "monitor": "val_accuracy",
            "patience": 2,
            "min_delta": 0.01,
            "restore_best": False,
        },
        "worker_resources": {"num_cpus": 0.5, "num_gpus": 0.25},
    },
    "ps": {"shards": 3, "resources": {"num_cpus": 1, "num_gpus": 0}, "max_params": 5000},
    "checkpoint": {"every_steps": 9, "keep": 4},
    "ensemble": {"members": 4, "bootstrap": False, "combine": "mean"},
}
CTR = {
    **{k: v for k, v in FULL.items() if k != "ensemble"},
    "data": {"source": "data/x.csv", "target": "label", "categorical": ["user", "item"]},
    "model": {
        "type": "deepfm",
        "embedding": {
            "dim": 4,
            "buckets": 2**33,
            "init": "uniform",
            "scale": 0.1,
            "admit_after": 2,
            "max_rows": 10**6,
            "evict": "lfu",
            "expire_after_steps": 500,
        },
        "layers": [{"type": "dense", "units": 1}],
        "loss": "bce",
    },
    "sparse_optimizer": {"name": "ftrl", "lr": 0.2, "beta": 0.5, "l1": 0.1, "l2": 0.2},
    "training": {**FULL["training"], "sparse_staleness": 3},
    "ps": {**FULL["ps"], "max_table_bytes": 2**34},
}


def test_a_spec_with_every_field_set_round_trips_through_proto():
    spec = parse_spec(FULL)
    back = proto_to_spec(spec_to_proto(spec))
    assert back == spec
    for optimizer in (
        {"name": "adamw", "betas": [0.8, 0.9], "weight_decay": 0.1, "amsgrad": True},
        {"name": "sgd", "momentum": 0.3, "dampening": 0.1, "nesterov": False},
        {"name": "adagrad", "lr_decay": 0.1, "initial_accumulator_value": 0.2},
        {"name": "adadelta", "rho": 0.8},
    ):
        s = parse_spec({**FULL, "optimizer": optimizer})
        assert proto_to_spec(spec_to_proto(s)) == s
    images = {
        "source": "data/pets",
        "image_size": [32, 24],
        "normalize": "none",
        "augment": {"shift": 2, "rotate": 10, "scale": [0.9, 1.1], "hflip": True, "noise": 0.1},
    }
    s = parse_spec({**FULL, "data": images, "model": MODELS[0]})
    assert proto_to_spec(spec_to_proto(s)) == s
    ctr = parse_spec(CTR)
    assert proto_to_spec(spec_to_proto(ctr)) == ctr
    stream = {
        "source": "data/clicks/",
        "format": "parquet",
        "target": "label",
        "categorical": ["user", "item"],
        "streaming": True,
        "max_in_memory": "3GiB",
        "shuffle_buffer": 5000,
        "validation_source": "data/val/",
        "test_source": "data/test/*.parquet",
    }
    s = parse_spec({**CTR, "data": stream})
    assert s.data.max_in_memory == 3 * 2**30 and s.data.is_file_set
    assert proto_to_spec(spec_to_proto(s)) == s
    for rule in ({"name": "adam", "betas": [0.8, 0.9], "eps": 1e-6}, {"name": "adagrad"}):
        s = parse_spec({**CTR, "sparse_optimizer": rule})
        assert proto_to_spec(spec_to_proto(s)) == s
    for model in MODELS:
        s = parse_spec({**FULL, "model": model, "data": {"layout": "image"}})
        assert proto_to_spec(spec_to_proto(s)) == s


MODELS = [
    {
        "layers": [
            {
                "type": "conv2d",
                "filters": 4,
                "kernel_size": [3, 2],
                "stride": 2,
                "padding": 1,
                "dilation": [1, 2],
                "groups": 1,
                "activation": "relu",
                "init": "he_normal",
                "bias": False,
            },
            {"type": "conv1d", "filters": 3, "kernel_size": 5, "padding": "same"},
            {"type": "max_pool2d", "pool_size": [2, 1], "stride": 1},
            {"type": "avg_pool1d", "pool_size": 3},
            {"type": "batch_norm", "momentum": 0.2, "eps": 0.001},
            {"type": "layer_norm", "eps": 0.01},
            {"type": "embedding", "input_dim": 100, "output_dim": 8},
            {
                "type": "gru",
                "units": 7,
                "layers": 2,
                "bidirectional": True,
                "return_sequences": True,
            },
            {"type": "lstm", "units": 5},
            {"type": "global_avg_pool"},
            {"type": "flatten"},
            {"type": "dense", "units": 3},
        ],
        "loss_fn": "pkg.losses:focal",
        "code": "src",
    },
    {
        "module": "pkg.nets:build",
        "kwargs": {"width": 32, "rate": 0.5, "name": "x", "sizes": [1, 2], "deep": {"a": True}},
        "code": "src",
        "loss": "bce",
    },
]


def test_domain_errors_map_to_status_codes():
    assert status_for(SpecError("a", "b")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(JobNotFound("x")) == grpc.StatusCode.NOT_FOUND
    assert status_for(JobExists("x")) == grpc.StatusCode.ALREADY_EXISTS
    assert status_for(ResourceError("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(JobNotFinished("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(QueueFull("x")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_for(ClusterUnavailable("x")) == grpc.StatusCode.UNAVAILABLE
    assert status_for(PSError("x")) == grpc.StatusCode.INTERNAL
    assert status_for(RuntimeError("x")) == grpc.StatusCode.INTERNAL
