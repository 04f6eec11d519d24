"""The worker actor: pull → forward/backward on its next minibatch → push, until done.

A worker knows its shard of the training data, the sharding plan of the parameters and the shard
actors; nothing else. It stops when its step budget is spent or a shard answers ``stop``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import ray
import torch

from ps.metrics import LATENCY_BUCKETS, Buckets
from ps.spec import JobSpec, parse_spec
from workers.data import epoch_batches
from workers.evaluation import loss_fn
from workers.flat import FlatModel
from workers.models import build_network
from workers.transport import ShardClient

REPORT_EVERY_S = 0.5


def step_seed(seed: int, worker: int, clock: int) -> int:
    """Dropout randomness as a function of (seed, worker, step): a replayed step is identical."""
    return (seed * 1_000_003 + worker * 7_919 + clock) % (2**63 - 1)


class Worker:
    """Computes gradients for one shard of the training data.

    Args:
        index: worker number (0-based).
        spec: the validated job spec (as a dict).
        train: object refs of the training features and targets (put once by the supervisor).
        bounds: this worker's [lo, hi) rows of the training split.
        n_inputs / n_outputs: the network's sizes.
        plan: the parameter slices [lo, hi) of each shard.
        shards: the shard actor handles, in plan order.
        supervisor: handle to report progress to.
        batches: minibatches per epoch; ``budget``: total steps (clock limit) of this worker.
    """

    def __init__(
        self,
        index: int,
        spec: dict[str, Any],
        train: list,
        bounds: tuple[int, int],
        n_inputs: int,
        n_outputs: int,
        plan: list[tuple[int, int]],
        shards: list,
        supervisor: Any,
        batches: int,
        budget: int,
        num_threads: int = 1,
        job_id: str = "",
    ) -> None:
        torch.set_num_threads(max(1, num_threads))
        self.index = index
        self.spec: JobSpec = parse_spec(spec)
        x, y = ray.get(train)
        lo, hi = bounds
        # One copy of this worker's rows; the full arrays stay in the object store.
        self.x = torch.from_numpy(np.array(x[lo:hi], copy=True))
        self.y = torch.from_numpy(np.array(y[lo:hi], copy=True))
        self.net = build_network(self.spec.model, n_inputs, n_outputs)
        t = self.spec.training
        n_params = sum(p.numel() for p in self.net.parameters())
        self.transport = ShardClient(
            index, shards, plan, n_params, job_id, t.transport, t.compression, t.topk_ratio
        )
        self.flat = FlatModel(self.net, self.transport.params, self.transport.grads)
        self.loss = loss_fn(self.spec.model.loss)
        self.supervisor = supervisor
        self.batches = batches
        self.budget = budget
        self._order: tuple[int, list[np.ndarray]] | None = None
        self.pull_hist = Buckets(LATENCY_BUCKETS)
        self.push_hist = Buckets(LATENCY_BUCKETS)

    def _batch(self, clock: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        epoch, b = divmod(clock, self.batches)
        if self._order is None or self._order[0] != epoch:
            order = epoch_batches(
                len(self.x), self.batches, self.spec.seed, self.index, epoch, self.spec.data.shuffle
            )
            self._order = (epoch, [torch.from_numpy(i) for i in order])
        idx = self._order[1][b]
        return self.x[idx], self.y[idx], epoch

    def run(self, start_clock: int = 0) -> dict[str, Any]:
        """Train from ``start_clock`` until the budget is spent or a shard says stop.

        Returns:
            The worker's totals: final clock, samples, and time spent in each phase.
        """
        try:
            return self._run(start_clock)
        finally:
            self.transport.close()

    def _run(self, start_clock: int) -> dict[str, Any]:
        self.net.train()
        clock, samples = start_clock, 0
        totals = {"pull_s": 0.0, "compute_s": 0.0, "push_s": 0.0}
        window = {"loss_sum": 0.0, "steps": 0, "samples": 0}
        last_report = time.monotonic()
        statuses: dict[str, int] = {}
        norm = None
        while clock < self.budget:
            t0 = time.perf_counter()
            read = self.transport.pull(clock)
            t1 = time.perf_counter()
            if read is None:
                break
            version, min_clock = read
            x, y, epoch = self._batch(clock)
            torch.manual_seed(step_seed(self.spec.seed, self.index, clock))
            self.flat.zero_grad()
            loss = self.loss(self.net(x), y)
            loss.backward()
            grad = self.flat.gradient()
            norm = float(torch.linalg.vector_norm(grad))
            t2 = time.perf_counter()
            clock += 1
            acks = self.transport.push(clock, version, min_clock, grad, norm)
            t3 = time.perf_counter()
            for a in acks:
                statuses[a] = statuses.get(a, 0) + 1
            samples += len(x)
            totals["pull_s"] += t1 - t0
            totals["compute_s"] += t2 - t1
            totals["push_s"] += t3 - t2
            self.pull_hist.observe(t1 - t0)
            self.push_hist.observe(t3 - t2)
            window["loss_sum"] += float(loss)
            window["steps"] += 1
            window["samples"] += len(x)
            now = time.monotonic()
            if now - last_report >= REPORT_EVERY_S:
                self._report(clock, epoch, window, norm)
                window = {"loss_sum": 0.0, "steps": 0, "samples": 0}
                last_report = now
        if window["steps"]:
            self._report(clock, clock // self.batches, window, norm, final=True)
        return {
            "worker": self.index,
            "clock": clock,
            "samples": samples,
            "acks": statuses,
            "pull_hist": self.pull_hist.to_dict(),
            "push_hist": self.push_hist.to_dict(),
            **totals,
        }

    def _report(
        self, clock: int, epoch: int, window: dict, norm: float | None, final: bool = False
    ) -> None:
        report = {
            "worker": self.index,
            "clock": clock,
            "epoch": epoch,
            "loss": window["loss_sum"] / window["steps"],
            "steps": window["steps"],
            "samples": window["samples"],
            "grad_norm": norm,
            "final": final,
            "pull_hist": self.pull_hist.to_dict(),
            "push_hist": self.push_hist.to_dict(),
        }
        if norm is not None and len(self.flat.layers) <= 64:
            report["layer_grad_norms"] = self.flat.layer_norms()
        self.supervisor.report.remote(report)  # fire and forget: progress must not slow training

    def ping(self) -> int:
        return self.index

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The Ray node this worker runs on (for operators and failure tests)."""
        return ray.get_runtime_context().get_node_id()
