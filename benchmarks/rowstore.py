"""The shard's row store: the compiled store against the numpy reference, in the same run.

One step of a shard's row work — read the rows of 4,096 distinct ids (the pull), then apply
their gradients with Adagrad (the push) — on a table of 100K rows × 16 and one of 10M rows × 16,
for each store; and the memory-traffic floor of that step: the bytes it must touch (each row
and its state) at this machine's random-access bandwidth, measured here by gathering random
rows of the same size from an array of the large table's size.

    python benchmarks/rowstore.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date

import numpy as np

from ps.optim.rows import build_row_rule
from ps.protocol.messages import TableConfig
from ps.server.rowstores import NativeRows, NumpyRows
from ps.server.sparse import SparseTable

WIDTH = 16
BATCH_KEYS = 4096
STORES = {"compiled": NativeRows, "numpy (reference)": NumpyRows}


def filled(store, rows: int) -> SparseTable:
    rule = build_row_rule({"name": "adagrad"})
    # Zero initial rows: the fill is not what is measured (the step costs the same).
    config = TableConfig(0, "t", 10**12, WIDTH, init="zeros")
    table = SparseTable(config, rule, seed=0, rows=store(WIDTH, rule))
    for lo in range(0, rows, 1 << 20):
        keys = np.arange(lo, min(rows, lo + (1 << 20)), dtype=np.int64) * 7919
        table.apply(keys, np.full((len(keys), WIDTH), 1e-3, np.float32))
    return table


def step_ms(table: SparseTable, rows: int, reps: int = 30, batch_keys: int = BATCH_KEYS) -> float:
    """Median ms to read a batch's rows and apply their gradients (fresh ids every step)."""
    rng, times = np.random.default_rng(0), []
    grads = np.full((batch_keys, WIDTH), 1e-3, np.float32)
    for _ in range(reps):
        keys = np.sort(rng.choice(rows, batch_keys, replace=False)).astype(np.int64) * 7919
        t0 = time.perf_counter()
        table.lookup(keys)
        table.apply(keys, grads)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def random_access_bandwidth(rows: int, row_bytes: int) -> float:
    """Bytes/s gathering random rows of ``row_bytes`` from ``rows`` rows (numpy's take)."""
    table = np.ones((rows, row_bytes // 4), np.float32)
    idx = np.random.default_rng(1).integers(0, rows, size=1 << 20)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        np.take(table, idx, axis=0)
        best = min(best, time.perf_counter() - t0)
    return len(idx) * row_bytes / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1M-row large table")
    args = parser.parse_args()
    big = 1_000_000 if args.quick else 10_000_000
    reps = 30
    row_bytes = 2 * WIDTH * 4  # the row and its Adagrad sum
    print(f"# row store — {date.today()} — {platform.machine()}, {BATCH_KEYS:,} rows per step\n")
    print("| store | 100K × 16 | {0}M × 16 | {0}M vs 100K | target |".format(big // 10**6))
    print("|---|---:|---:|---:|---:|")
    large_ms = {}
    for name, store in STORES.items():
        small = step_ms(filled(store, 100_000), 100_000, reps)
        table = filled(store, big)
        large_ms[name] = step_ms(table, big, reps)
        del table
        ratio = large_ms[name] / small
        print(f"| {name} | {small:.3f} ms | {large_ms[name]:.3f} ms | {ratio:.2f}× | ±15% |")
    compiled, reference = large_ms["compiled"], large_ms["numpy (reference)"]
    bandwidth = random_access_bandwidth(big, row_bytes)
    floor_ms = BATCH_KEYS * row_bytes / bandwidth * 1e3
    print(
        f"\ncompiled vs numpy on the {big // 10**6}M-row table: {reference / compiled:.1f}× faster"
    )
    print(
        f"random-access bandwidth ({row_bytes}-byte rows of {big // 10**6}M): "
        f"{bandwidth / 2**30:.2f} GiB/s; floor of one step "
        f"({BATCH_KEYS:,} × {row_bytes} B): {floor_ms:.3f} ms"
    )
    print(f"| compiled step vs the floor | {compiled / floor_ms:.2f}× | target ≤ 3× |")


if __name__ == "__main__":
    main()
