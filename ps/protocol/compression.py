"""Gradient compression for pushes: none, fp16, bf16, or top-k with error feedback.

A worker compresses each shard's slice of its gradient into a payload; the shard decompresses
it into a dense float32 buffer. Top-k keeps the k largest-magnitude coordinates of
(gradient + residual) and carries what it dropped into the next step (error feedback), so no
gradient mass is lost, only delayed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

KINDS = ("none", "fp16", "bf16", "topk")


class Compressor:
    """Per-worker compression state for one shard slice of ``size`` floats."""

    def __init__(self, kind: str, size: int, topk_ratio: float = 0.01) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown compression {kind!r} (choose from {KINDS})")
        self.kind = kind
        self.k = max(1, int(round(size * topk_ratio)))
        self.residual = torch.zeros(size) if kind == "topk" else None

    def compress(self, grad: torch.Tensor) -> Any:
        """The payload for one push (a float32 array when uncompressed)."""
        if self.kind == "none":
            return grad.numpy()
        if self.kind == "fp16":
            return {"kind": "fp16", "data": grad.numpy().astype(np.float16)}
        if self.kind == "bf16":
            return {"kind": "bf16", "data": grad.to(torch.bfloat16).view(torch.int16).numpy()}
        acc = self.residual.add_(grad)
        idx = torch.topk(acc.abs(), self.k, sorted=False).indices
        values = acc[idx].clone()
        acc[idx] = 0.0  # what was sent leaves the residual; the rest waits for later steps
        return {
            "kind": "topk",
            "size": acc.numel(),
            "index": idx.to(torch.int32).numpy(),
            "values": values.numpy(),
        }


def payload_nbytes(payload: Any) -> int:
    if isinstance(payload, np.ndarray):
        return payload.nbytes
    return sum(v.nbytes for v in payload.values() if isinstance(v, np.ndarray))


def decompress_into(payload: Any, out: np.ndarray) -> np.ndarray:
    """Write the dense float32 gradient of ``payload`` into ``out`` (same length) and return it."""
    if isinstance(payload, np.ndarray):
        np.copyto(out, payload)
        return out
    kind = payload["kind"]
    if kind == "fp16":
        np.copyto(out, payload["data"], casting="unsafe")
    elif kind == "bf16":
        dense = torch.from_numpy(payload["data"].copy()).view(torch.bfloat16).float()
        np.copyto(out, dense.numpy())
    elif kind == "topk":
        out.fill(0.0)
        out[payload["index"]] = payload["values"]
    else:
        raise ValueError(f"unknown gradient payload {kind!r}")
    return out


def payload_shape(payload: Any) -> tuple[int, ...]:
    if isinstance(payload, np.ndarray):
        return payload.shape
    if payload["kind"] == "topk":
        return (payload["size"],)
    return payload["data"].shape
