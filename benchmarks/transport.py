"""Parameter transport: one pull + push round trip from a worker actor, against two baselines.

For 1M, 10M and 50M float32 parameters and 1 and 2 shards, a worker actor times the real data
path (``workers.transport.ShardClient`` against ``ParameterShard`` actors applying a plain SGD
update per push), in the same run as:

- **memcpy**: one ``np.copyto`` of the same number of bytes (the memory-bandwidth floor);
- **naive**: the pattern of Ray's parameter-server example — a server actor whose method returns
  the parameters as a numpy array, and a method taking the gradient as an argument.

    python benchmarks/transport.py [--sizes 1000000 10000000 50000000] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date

import numpy as np
import ray
import torch

from ps.server.shard import ParameterShard, ShardConfig
from ps.server.slices import param_slices
from workers.transport import ShardClient


class NaiveServer:
    """Ray's parameter-server example, reduced to its transport: numpy in, numpy out."""

    def __init__(self, n: int) -> None:
        self.params = np.zeros(n, np.float32)

    def get_params(self) -> np.ndarray:
        return self.params

    def apply_gradients(self, grad: np.ndarray) -> None:
        self.params -= 0.001 * grad


class BenchWorker:
    def __init__(self, n: int) -> None:
        torch.set_num_threads(1)
        self.params = torch.zeros(n)
        self.grad = torch.full((n,), 1e-3)  # the naive baseline's gradient

    def ours(self, shards: list, plan: list, reps: int, transport: str) -> list[float]:
        client = ShardClient(
            0, shards, plan, self.params.numel(), job_id="bench", transport=transport
        )
        client.grads.fill_(1e-3)
        times = []
        try:
            for clock in range(reps + 1):
                t0 = time.perf_counter()
                version, min_clock = client.pull(clock)
                client.push(clock + 1, version, min_clock, client.grads, None)
                times.append(time.perf_counter() - t0)
        finally:
            client.close()
        return times[1:]  # the first round trip maps buffers / warms the object store up

    def naive(self, server, reps: int) -> list[float]:
        grad = self.grad.numpy()
        times = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            params = ray.get(server.get_params.remote())
            np.copyto(self.params.numpy(), params)
            ray.get(server.apply_gradients.remote(grad))
            times.append(time.perf_counter() - t0)
        return times[1:]


def sgd_shards(plan: list[tuple[int, int]]) -> list:
    """Shard actors for ``plan`` applying plain SGD, one worker, async (no gate waits)."""
    return [
        ray.remote(ParameterShard)
        .options(num_cpus=0, max_concurrency=100)
        .remote(
            ShardConfig.make(
                i, {"name": "sgd", "lr": 1e-3}, offset=lo, size=hi - lo, shards=len(plan)
            ),
            np.zeros(hi - lo, np.float32),
        )
        for i, (lo, hi) in enumerate(plan)
    ]


def round_trip_ms(worker, shards: list, plan: list, reps: int, transport: str) -> float:
    """Median ms of a worker's pull + push round trip; the shards are killed afterwards."""
    try:
        return statistics.median(ray.get(worker.ours.remote(shards, plan, reps, transport))) * 1e3
    finally:
        for s in shards:
            ray.kill(s)


def memcpy_ms(n: int, reps: int) -> float:
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    np.copyto(dst, src)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    ray.init(
        address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR"
    )
    print(
        f"# transport round trip (pull + push + SGD update) — {date.today()} — {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(
        "(median ms per round trip; ratios against one memcpy of the same bytes, measured in this run)\n"
    )
    print(
        "| params | shards | shm ms | object store ms | naive ms | memcpy ms | shm / memcpy | object store / memcpy | naive / memcpy | naive / shm |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        worker = ray.remote(BenchWorker).options(num_cpus=1).remote(n)
        naive_server = ray.remote(NaiveServer).options(num_cpus=0).remote(n)
        naive = statistics.median(ray.get(worker.naive.remote(naive_server, args.reps))) * 1e3
        ray.kill(naive_server)
        for k in args.shards:
            plan = param_slices(n, k)
            timing = {}
            for transport in ("auto", "object_store"):
                shards = sgd_shards(plan)
                timing[transport] = round_trip_ms(worker, shards, plan, args.reps, transport)
            fast, plain = timing["auto"], timing["object_store"]
            copy = memcpy_ms(n, args.reps)
            print(
                f"| {n:,} | {k} | {fast:.1f} | {plain:.1f} | {naive:.1f} | {copy:.2f} | {fast / copy:.1f}× "
                f"| {plain / copy:.1f}× | {naive / copy:.1f}× | {naive / fast:.1f}× |"
            )
        ray.kill(worker)
    ray.shutdown()


if __name__ == "__main__":
    main()
