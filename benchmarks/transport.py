"""Parameter transport: one push + pull round trip from a worker actor, against baselines.

A worker actor times the real data path (``workers.transport.ShardClient`` against
``ParameterShard`` actors applying a plain SGD update per push; the push of a step and the pull
of the next travel together), for each link:

- **shm**: a Unix-domain channel carrying doorbells, the slices through shared memory (same node);
- **unix**: the same channel with the slices inline (what compression uses on one node);
- **object store**: a Ray actor call for each pull and push (``training.transport:
  object_store``, and the fallback);

in the same run as **memcpy** (one ``np.copyto`` of the same bytes, the memory-bandwidth floor)
and **naive**, the pattern of Ray's parameter-server example (a method returning the parameters
as numpy, another taking the gradient). Then, on a ``ray.cluster_utils.Cluster`` of two nodes,
the shard on one and the worker on the other: **tcp** against the object store.

    python benchmarks/transport.py [--sizes 1000000 10000000] [--reps 9]
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
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ps.server.actor import ParameterShard
from ps.server.config import ShardConfig
from ps.server.slices import param_slices
from workers.transport import ShardClient, StepPull, StepPush

LINKS = {"shm": ("auto", True), "unix": ("auto", False), "object store": ("object_store", True)}


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
        self.n = n
        self.params = np.zeros(n, np.float32)
        self.grad = np.full(n, 1e-3, np.float32)  # the naive baseline's gradient

    def ours(self, shards, slices, reps, link: str, token: bytes) -> tuple[list[float], list]:
        transport, shared = LINKS.get(link, ("auto", True))
        client = ShardClient(
            0, shards, slices, self.n, 0, "bench", transport, token=token, shared_memory=shared
        )
        client.grads.fill_(1e-3)
        times = []
        try:
            client.pull(StepPull(0))
            for clock in range(reps + 1):
                t0 = time.perf_counter()
                client.send(StepPush(clock + 1, clock, clock, 1.0), StepPull(clock + 1))
                client.acks()
                client.read()
                times.append(time.perf_counter() - t0)
        finally:
            client.close()
        return times[1:], client.kinds  # the first round trip maps buffers and warms up

    def naive(self, server, reps: int) -> list[float]:
        times = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            np.copyto(self.params, ray.get(server.get_params.remote()))
            ray.get(server.apply_gradients.remote(self.grad))
            times.append(time.perf_counter() - t0)
        return times[1:]


def sgd_shards(slices, token: bytes, node: str | None = None) -> list:
    """Shard actors for ``slices`` applying plain SGD, one worker, async (no gate waits)."""
    options = {"num_cpus": 0, "max_concurrency": 100}
    if node is not None:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    return [
        ray.remote(ParameterShard)
        .options(**options)
        .remote(
            ShardConfig.make(
                i,
                {"name": "sgd", "lr": 1e-3},
                offset=lo,
                size=hi - lo,
                shards=len(slices),
                token=token,
            ),
            np.zeros(hi - lo, np.float32),
        )
        for i, (lo, hi) in enumerate(slices)
    ]


def round_trip_ms(worker, shards, slices, reps, link, token) -> tuple[float, list]:
    """Median ms of a worker's push + pull round trip; the shards are killed afterwards."""
    try:
        times, kinds = ray.get(worker.ours.remote(shards, slices, reps, link, token))
        return statistics.median(times) * 1e3, kinds
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


def same_node(sizes: list[int], shard_counts: list[int], reps: int) -> None:
    ray.init(
        address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR"
    )
    token = secrets.token_bytes(32)
    print(
        "| params | shards | shm ms | unix ms | object store ms | naive ms | memcpy ms "
        "| shm / memcpy | target | object store / shm | naive / shm |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        worker = ray.remote(BenchWorker).options(num_cpus=1).remote(n)
        server = ray.remote(NaiveServer).options(num_cpus=0).remote(n)
        naive = statistics.median(ray.get(worker.naive.remote(server, reps))) * 1e3
        ray.kill(server)
        for k in shard_counts:
            slices = param_slices(n, k)
            ms = {
                link: round_trip_ms(worker, sgd_shards(slices, token), slices, reps, link, token)[0]
                for link in LINKS
            }
            copy = memcpy_ms(n, reps)
            target = "≤ 3×" if n < 5_000_000 else "≤ 2×"
            print(
                f"| {n:,} | {k} | {ms['shm']:.2f} | {ms['unix']:.2f} | {ms['object store']:.2f} "
                f"| {naive:.2f} | {copy:.2f} | {ms['shm'] / copy:.1f}× | {target} "
                f"| {ms['object store'] / ms['shm']:.1f}× | {naive / ms['shm']:.1f}× |"
            )
        ray.kill(worker)
    ray.shutdown()


def across_nodes(n: int, reps: int) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="ERROR")
    cluster.wait_for_nodes()
    token = secrets.token_bytes(32)
    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    worker = (
        ray.remote(BenchWorker)
        .options(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[1], False))
        .remote(n)
    )
    slices = param_slices(n, 1)
    tcp, kinds = round_trip_ms(
        worker, sgd_shards(slices, token, nodes[0]), slices, reps, "tcp", token
    )
    store, _ = round_trip_ms(
        worker, sgd_shards(slices, token, nodes[0]), slices, reps, "object store", token
    )
    copy = memcpy_ms(n, reps)
    print(
        "\n| params | link | tcp ms | object store ms | memcpy ms | object store / tcp | target |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    print(
        f"| {n:,} | {kinds[0]} | {tcp:.1f} | {store:.1f} | {copy:.2f} | {store / tcp:.1f}× | ≥ 3× |"
    )
    ray.shutdown()
    cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--across", type=int, default=10_000_000, help="0: skip the two nodes")
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    print(
        f"# transport round trip (push + SGD update + pull) — {date.today()} — "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    print("(median ms per round trip; ratios against one memcpy of the same bytes, this run)\n")
    same_node(args.sizes, args.shards, args.reps)
    if args.across:
        across_nodes(args.across, args.reps)


if __name__ == "__main__":
    main()
