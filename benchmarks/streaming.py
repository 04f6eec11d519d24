"""Streaming against holding the data in memory, as the user sees it: the streamed CTR job
(examples/ctr-stream.yaml, whole job: scan, training, evaluation) against the same files with
``data.streaming: false``, and the feed's ingest rate against a plain pyarrow read of the same
files. Prints each ratio with its target beside it."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.make_clicks import write_clicks  # noqa: E402
from ps.jobs.admission import prepare  # noqa: E402
from ps.jobs.runner import run_job  # noqa: E402
from ps.spec import parse_spec  # noqa: E402
from workers.data.assignment import EqualShares  # noqa: E402
from workers.data.streams import StreamFeed  # noqa: E402

ROWS = 400_000


def job(source: Path, mode: str, streaming: bool) -> dict:
    data = yaml.safe_load((ROOT / "examples" / "ctr-stream.yaml").read_text())
    data["data"].update(source=str(source), streaming=streaming)
    data["training"]["mode"] = mode
    data.pop("checkpoint")
    return data


def ingest(source: Path) -> tuple[float, float]:
    """(feed rows/s: decode, hash, normalize, cut into batches; pyarrow read rows/s)."""
    spec = parse_spec(job(source, "sync", True))
    data, _, plan = prepare(spec)
    feed = StreamFeed(data.stream, EqualShares(data.stream, 0, 1, plan.batches * 2))
    start = time.perf_counter()
    for clock in range(plan.batches * 2):
        feed.batch(clock)
    feed_rate = data.stream.n_train / (time.perf_counter() - start)
    feed.close()
    start = time.perf_counter()
    rows = sum(pq.read_table(p).num_rows for p in sorted(source.parent.glob("*.parquet")))
    return feed_rate, rows / (time.perf_counter() - start)


def main() -> None:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp) / "clicks"
        write_clicks(files, ROWS, 8)
        source = files / "*.parquet"
        print(f"click log: {ROWS:,} rows, 8 files, 8 string fields; DeepFM as the example")
        for mode in ("sync", "async"):
            rates = {}
            for streaming in (False, True):
                out = Path(tmp) / f"{mode}-{streaming}"
                start = time.perf_counter()
                result = run_job(parse_spec(job(source, mode, streaming)), out)
                whole = time.perf_counter() - start
                rates[streaming] = (result.samples / whole, result.test_auc)
            ratio = rates[True][0] / rates[False][0]
            print(
                f"{mode:5s} streamed {rates[True][0]:9,.0f} samples/s (whole job) vs in memory "
                f"{rates[False][0]:9,.0f}: {ratio:.2f}x (target >= 0.9x); test AUC "
                f"{rates[True][1]:.3f} vs {rates[False][1]:.3f}"
            )
        feed, plain = ingest(source)
        print(
            f"ingest: the feed {feed:,.0f} rows/s vs pyarrow read_table {plain:,.0f} rows/s: "
            f"{feed / plain:.2f}x (the feed also hashes 8 string fields and cuts batches)"
        )


if __name__ == "__main__":
    main()
