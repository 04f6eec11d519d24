"""How a step's cost grows with the parameter count and with workers; saves docs/scaling.png.

Parameter count: the shared-memory round trip (pull + push + SGD update, 2 shards) of
``benchmarks/transport.py`` for 1M to 50M parameters, as ms and as ns per parameter, against a
memcpy of the same bytes in the same run. Workers: samples/s of the throughput benchmark's
sync job with 1 and 2 workers.

    python benchmarks/scaling.py [--sizes ...] [--out docs/scaling.png]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import job  # noqa: E402
from transport import BenchWorker, memcpy_ms, round_trip_ms, sgd_shards  # noqa: E402

from ps.jobs.runner import run_job  # noqa: E402
from ps.server.slices import param_slices  # noqa: E402
from ps.spec import parse_spec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1_000_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000],
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("docs/scaling.png"))
    args = parser.parse_args()
    ray.init(
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
    )
    rows = []
    for n in args.sizes:
        worker = ray.remote(BenchWorker).options(num_cpus=1).remote(n)
        plan = param_slices(n, 2)
        token = secrets.token_bytes(32)
        ms, _ = round_trip_ms(worker, sgd_shards(plan, token), plan, args.reps, "shm", token)
        ray.kill(worker)
        rows.append((n, ms, memcpy_ms(n, args.reps)))
    throughput = {}
    with TemporaryDirectory() as tmp:
        for workers in (1, 2):
            result = run_job(parse_spec(job(workers, "sync", args.steps)), Path(tmp) / str(workers))
            throughput[workers] = result.samples / max(w["loop_s"] for w in result.workers)
    ray.shutdown()

    print(
        f"# step cost against parameter count — {date.today()} — {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(
        "(shared-memory round trip with an SGD update, 2 shards; per-parameter cost relative to 1M)\n"
    )
    print(
        "| params | round trip ms | ns / parameter | relative to the smallest | target "
        "| memcpy ms | round trip / memcpy |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    base = rows[0][1] / rows[0][0]
    for n, ms, copy in rows:
        print(
            f"| {n:,} | {ms:.1f} | {ms / n * 1e6:.2f} | {ms / n / base:.2f} | 0.7–1.3 "
            f"| {copy:.2f} | {ms / copy:.1f}× |"
        )
    print(
        f"\nworkers (sync, 1.3M-parameter MLP, batch 128 each): 1 → {throughput[1]:,.0f} samples/s, "
        f"2 → {throughput[2]:,.0f} samples/s ({throughput[2] / throughput[1]:.2f}×)"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    sizes = [n / 1e6 for n, _, _ in rows]
    ax.plot(sizes, [ms for _, ms, _ in rows], "o-", label="round trip (pull + push + update)")
    ax.plot(sizes, [copy for _, _, copy in rows], "s--", label="one memcpy of the same bytes")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("ms")
    ax.set_title("Step cost against parameter count (shared memory, 2 shards)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
