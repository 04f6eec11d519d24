"""Helpers for runtime tests: small specs and running them on the shared Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ps.jobs.runner import run_job
from ps.spec import parse_spec
from workers.models import load_model


def spec(**sections: Any) -> dict[str, Any]:
    """A small digits spec with ``sections`` merged over it (one level deep)."""
    base: dict[str, Any] = {
        "seed": 0,
        "data": {"source": "digits"},
        "model": {
            "layers": [
                {"type": "dense", "units": 32, "activation": "relu"},
                {"type": "dense", "units": 10},
            ]
        },
        "optimizer": {"name": "adam", "lr": 0.01},
        "training": {"workers": 2, "mode": "sync", "batch_size": 64, "epochs": 5},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def run(spec_dict: dict[str, Any], out: Path, events: list | None = None) -> dict[str, Any]:
    return run_job(
        parse_spec(spec_dict), out, on_event=events.append if events is not None else None
    )


def flat_params(run_dir: Path):
    import torch

    model = load_model(run_dir / "model.pt")
    return torch.cat([p.detach().reshape(-1) for p in model.net.parameters()])
