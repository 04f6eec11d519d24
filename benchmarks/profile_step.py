"""Where the time of one training step goes, before and after the data-plane channels.

One worker actor trains the throughput benchmark's 1.3M-parameter MLP (batch 128, 1 thread)
against one sync shard applying momentum SGD, and times each phase of its steps:

- **before**: Ray actor calls for every pull and push, the slices through shared memory (the
  path every job took before the channels: ``ray-shm``);
- **after**: the persistent channel (a Unix socket carrying doorbells, the slices in shared
  memory: ``shm``), the push of a step and the pull of the next in one round trip.

    python benchmarks/profile_step.py [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import time
from datetime import date

import numpy as np
import ray
import torch

from ps.server.actor import ParameterShard
from ps.server.config import ShardConfig

SIZES = (256, 1024, 1024, 10)


class Profiler:
    def __init__(self) -> None:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        layers = []
        for a, b in zip(SIZES, SIZES[1:], strict=False):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        self.net = torch.nn.Sequential(*layers[:-1])
        self.n = sum(p.numel() for p in self.net.parameters())
        self.x, self.y = torch.randn(4096, SIZES[0]), torch.randint(0, 10, (4096,))

    def size(self) -> int:
        return self.n

    def run(self, shard, token: bytes | None, steps: int) -> dict[str, float]:
        from workers.flat import FlatModel
        from workers.transport import ShardClient, StepPull, StepPush

        client = ShardClient(0, [shard], [(0, self.n)], self.n, job_id="profile", token=token)
        flat = FlatModel(self.net, client.state, client.grads)
        phases = {"forward + backward": [], "norm and bookkeeping": [], "push": [], "pull": []}
        read = client.pull(StepPull(0))
        for clock in range(steps):
            idx = torch.randint(0, len(self.x), (128,))
            t0 = time.perf_counter()
            flat.zero_grad()
            torch.nn.functional.cross_entropy(self.net(self.x[idx]), self.y[idx]).backward()
            t1 = time.perf_counter()
            grad = flat.gradient()
            norm = float(torch.linalg.vector_norm(grad))
            t2 = time.perf_counter()
            client.send(
                StepPush(clock + 1, read.version, read.min_clock, norm), StepPull(clock + 1)
            )
            client.acks()
            t3 = time.perf_counter()
            read = client.read()
            t4 = time.perf_counter()
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[name].append(seconds)
        client.close()
        out = {k: statistics.median(v[10:]) * 1e6 for k, v in phases.items()}
        out["links"] = client.kinds
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    ray.init(
        address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR"
    )
    worker = ray.remote(Profiler).options(num_cpus=1).remote()
    n = ray.get(worker.size.remote())
    rows = {}
    for label, use_channel in (("before (Ray calls)", False), ("after (channel)", True)):
        token = secrets.token_bytes(32)
        config = ShardConfig.make(
            0,
            {"name": "momentum", "lr": 1e-3},
            offset=0,
            size=n,
            mode="sync",
            workers=1,
            token=token,
        )
        shard = (
            ray.remote(ParameterShard).options(num_cpus=0).remote(config, np.zeros(n, np.float32))
        )
        # Without the secret the worker cannot open the channel and uses Ray calls.
        rows[label] = ray.get(worker.run.remote(shard, token if use_channel else None, args.steps))
        stats = ray.get(shard.stats.remote())
        rows[label]["shard update (inside push)"] = stats.update_seconds / stats.updates * 1e6
        ray.kill(shard)
    ray.shutdown()
    print(f"# one step, µs (median) — {date.today()} — {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"(1 worker, sync, {n:,}-parameter MLP, batch 128, momentum SGD at the shard)\n")
    labels = list(rows)
    print(
        "| phase | " + " | ".join(f"{label} [{rows[label]['links'][0]}]" for label in labels) + " |"
    )
    print("|---|" + "---:|" * len(labels))
    phases = [k for k in rows[labels[0]] if k != "links"]
    for phase in phases:
        print(f"| {phase} | " + " | ".join(f"{rows[label][phase]:,.0f}" for label in labels) + " |")
    totals = [sum(rows[label][p] for p in phases[:4]) for label in labels]
    print("| **step** | " + " | ".join(f"**{t:,.0f}**" for t in totals) + " |")


if __name__ == "__main__":
    main()
