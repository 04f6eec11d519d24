"""Streamed file sets without Ray: every training row once per epoch in equal shares, the same
minibatches as the data in memory (without shuffle), a replayed step equal to the first, and
bad file sets refused at admission with the file's name."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ps.errors import SpecError
from ps.jobs.admission import admit, check_whole_data, prepare
from ps.jobs.ledger import Ledger
from ps.spec import parse_spec
from workers.data import batches_per_epoch, epoch_batches, load_dataset, worker_rows
from workers.data.assignment import EqualShares, LedgerShares
from workers.data.streams import StreamFeed, share_segments

ROWS, FILES = 1500, 3


def write_files(directory, rows=ROWS, files=FILES, row_group=200, start=0):
    """Parquet files whose ``rid`` column numbers the rows (a float feature: exact in float32)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    per = rows // files
    for f in range(files):
        rid = np.arange(start + f * per, start + (f + 1) * per)
        a = rng.normal(size=per).astype(np.float32)
        table = pa.table(
            {
                "rid": rid.astype(np.float64),
                "a": a,
                "cat": pa.array([f"c{v % 7}" for v in rid]),
                "y": (a > 0).astype(np.int64),
            }
        )
        pq.write_table(table, directory / f"part-{f}.parquet", row_group_size=row_group)
    return directory


def job(source, **data):
    return parse_spec(
        {
            "seed": 4,
            "data": {"source": str(source), "target": "y", "categorical": ["cat"], **data},
            "model": {"type": "logistic", "embedding": {"dim": 2, "buckets": 64}, "loss": "bce"},
            "training": {"workers": 2, "batch_size": 64, "epochs": 2, "mode": "sync"},
        }
    )


def feed_of(spec, worker, block_rows=97):
    data, _, plan = prepare(spec)
    workers = spec.training.workers
    shares = EqualShares(data.stream, worker, workers, plan.batches)
    return StreamFeed(data.stream, shares, block_rows), data, plan


def rids(x, data):
    """The row numbers of normalized rows (column 0 is ``rid``)."""
    return np.rint(x[:, 0] * data.scale[0] + data.shift[0]).astype(np.int64)


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_training_row_is_read_once_per_epoch_in_equal_shares(tmp_path, shuffle):
    spec = job(tmp_path / "d" / "*.parquet", shuffle=shuffle, shuffle_buffer=150)
    write_files(tmp_path / "d")
    epochs, seen = 3, {}
    for worker in range(2):
        feed, data, plan = feed_of(spec, worker)  # one feed reads the epochs one after another
        for clock in range(epochs * plan.batches):
            x, _, _ = feed.batch(clock)
            seen.setdefault(clock // plan.batches, {}).setdefault(worker, []).append(rids(x, data))
        feed.close()
    for shares in seen.values():
        ids = [np.concatenate(batches) for batches in shares.values()]
        everything = np.concatenate(ids)
        assert len(everything) == len(set(everything.tolist())) == data.n_train
        assert max(map(len, ids)) - min(map(len, ids)) <= 1
    held = np.concatenate([rids(data.x_val, data), rids(data.x_test, data)])
    assert not set(held.tolist()) & set(everything.tolist())
    assert len(held) + data.n_train == ROWS


def test_without_shuffle_the_batches_equal_the_same_data_in_memory(tmp_path):
    write_files(tmp_path / "d")
    spec = job(tmp_path / "d", shuffle=False, validation_split=0, test_split=0)
    memory = load_dataset(
        spec.data.model_copy(update={"streaming": False}), "bce", spec.seed, None, 64
    )
    np.testing.assert_allclose(rids(memory.x_train, memory), np.arange(ROWS))
    batches = batches_per_epoch(ROWS, 2, 64)
    for worker, (lo, hi) in enumerate(worker_rows(ROWS, 2)):
        feed, data, plan = feed_of(spec, worker)
        assert plan.batches == batches
        for b, index in enumerate(epoch_batches(hi - lo, batches, spec.seed, worker, 0, False)):
            x, y, ids = feed.batch(b)
            # float64 statistics here, float32 in memory: equal to float32 rounding
            np.testing.assert_allclose(x, memory.x_train[lo:hi][index], rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(y, memory.y_train[lo:hi][index])
            np.testing.assert_array_equal(ids, memory.ids_train[lo:hi][index])
        feed.close()


def test_a_worker_started_at_a_later_step_reads_what_it_would_have_read(tmp_path):
    write_files(tmp_path / "d")
    spec = job(tmp_path / "d", shuffle=True, shuffle_buffer=100)
    first, data, plan = feed_of(spec, 1)
    sequential = [first.batch(c) for c in range(plan.batches + 5)]
    for clock in (3, plan.batches - 1, plan.batches + 2):
        again, _, _ = feed_of(spec, 1)
        x, y, ids = again.batch(clock)
        again.close()
        np.testing.assert_array_equal(x, sequential[clock][0])
        np.testing.assert_array_equal(ids, sequential[clock][2])
    first.close()


def test_shares_follow_the_epochs_item_order(tmp_path):
    write_files(tmp_path / "d")
    data, _, _ = prepare(job(tmp_path / "d", shuffle=True))
    orders = [
        [item for item, _, _ in share_segments(data.stream, epoch, 0, 2)] for epoch in range(3)
    ]
    assert len({tuple(o) for o in orders}) > 1  # items are reordered per epoch


def _corrupt(path):
    path.write_bytes(b"not a parquet file at all")


@pytest.mark.parametrize(
    ("change", "key", "text"),
    [
        (lambda d: [p.unlink() for p in d.iterdir()], "data.source", "no .parquet"),
        (
            lambda d: pq.write_table(
                pa.table({"rid": [1.0], "a": [1.0], "cat": ["x"], "y": [1], "extra": [2.0]}),
                d / "part-9.parquet",
            ),
            "data.source",
            "part-9.parquet has other columns",
        ),
        (
            lambda d: pq.write_table(
                pa.table({"rid": [1.0], "a": [1.0], "cat": ["x"]}), d / "part-9.parquet"
            ),
            "data.target",
            "not in part-9.parquet",
        ),
        (lambda d: _corrupt(d / "part-1.parquet"), "data.source", "cannot read part-1.parquet"),
        (lambda d: (d / "more.csv").write_text("a,y\n1,0\n"), "data.format", "several suffixes"),
    ],
)
def test_bad_file_sets_are_refused_at_admission_naming_the_file(tmp_path, change, key, text):
    directory = write_files(tmp_path / "d")
    change(directory)
    with pytest.raises(SpecError) as err:
        admit(job(directory))
    assert err.value.path == key and text in str(err.value)


def test_an_absent_categorical_column_and_an_empty_glob_are_refused(tmp_path):
    directory = write_files(tmp_path / "d")
    spec = job(directory).to_dict()
    spec["data"]["categorical"] = ["cat", "nope"]
    with pytest.raises(SpecError, match="'nope'") as err:
        admit(parse_spec(spec))
    assert err.value.path == "data.categorical"
    with pytest.raises(SpecError, match="no .parquet") as err:
        admit(job(tmp_path / "d" / "*.nothing.parquet"))


def test_a_non_finite_value_is_named_with_its_file_before_training(tmp_path):
    directory = write_files(tmp_path / "d")
    table = pq.read_table(directory / "part-2.parquet")
    a = table.column("a").to_numpy().copy()
    a[7] = np.nan
    pq.write_table(table.set_column(1, "a", pa.array(a)), directory / "part-2.parquet")
    spec = job(directory)
    check_whole_data(admit(spec).spec)  # streamed data is not loaded at submission ...
    with pytest.raises(SpecError, match=r"part-2.parquet: .*NaN.*row 7 of the file"):
        prepare(admit(spec).spec)  # ... its scan before training names the file and row


def test_separate_validation_files_replace_the_hash_split(tmp_path):
    write_files(tmp_path / "d")
    write_files(tmp_path / "v", rows=300, files=1, start=10_000)
    data, _, _ = prepare(job(tmp_path / "d", validation_source=str(tmp_path / "v")))
    assert sorted(rids(data.x_val, data)) == list(range(10_000, 10_300))
    assert data.n_train + len(data.x_test) == ROWS  # only the test split is hashed off


def test_the_ledger_gives_each_item_once_per_epoch_and_survives_its_supervisor(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger((5, 0, 7, 3), epochs=2, workers=2, path=path)
    taken = [ledger.take(0), ledger.take(0), ledger.take(0), ledger.take(1)]
    again = Ledger((5, 0, 7, 3), epochs=2, workers=2, path=path, resume=True)
    assert again.positions(0) == taken[:3] and again.positions(1) == taken[3:]
    with open(path, "a") as f:
        f.write('{"worker": 1, "posi')  # a crash while writing: never handed out
    rest = Ledger((5, 0, 7, 3), epochs=2, workers=2, path=path, resume=True)
    while (position := rest.take(1)) is not None:
        taken.append(position)
    assert sorted(taken) == [0, 2, 3, 4, 6, 7]  # item 1 has no training rows


def test_a_faster_worker_reads_more_items_and_every_row_is_read_once(tmp_path):
    write_files(tmp_path / "d")
    spec = job(tmp_path / "d", shuffle=True, shuffle_buffer=50)
    data, _, _ = prepare(spec)
    ledger = Ledger(data.stream.train_rows, epochs=1, workers=2)
    feeds = [
        StreamFeed(data.stream, LedgerShares(data.stream, 64, [], lambda w=w: ledger.take(w)))
        for w in range(2)
    ]
    read, clocks = [[], []], [0, 0]
    while True:  # worker 0 takes three steps for each of worker 1's
        progressed = False
        for w, steps in ((0, 3), (1, 1)):
            for _ in range(steps):
                if feeds[w].has(clocks[w]):
                    read[w].append(rids(feeds[w].batch(clocks[w])[0], data))
                    clocks[w] += 1
                    progressed = True
        if not progressed:
            break
    everything = np.concatenate(read[0] + read[1])
    assert sorted(everything.tolist()) == sorted(set(everything.tolist()))
    assert len(everything) == data.n_train
    assert len(ledger.positions(0)) > len(ledger.positions(1))
    # A replacement of worker 0 started at clock 5 reads what worker 0 read there.
    again = StreamFeed(data.stream, LedgerShares(data.stream, 64, ledger.positions(0), None))
    np.testing.assert_array_equal(rids(again.batch(5)[0], data), read[0][5])
    for feed in (*feeds, again):
        feed.close()


def test_npz_files_stream_like_tables(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "n").mkdir()
    for f in range(3):
        x = rng.normal(size=(100, 3)).astype(np.float32)
        np.savez(tmp_path / "n" / f"{f}.npz", X=x, y=(x[:, 0] > 0).astype(np.int64))
    spec = parse_spec(
        {
            "data": {"source": str(tmp_path / "n" / "*.npz"), "validation_split": 0.2},
            "model": {"layers": [{"type": "dense", "units": 2}]},
            "training": {"workers": 2, "batch_size": 16},
        }
    )
    data, _, plan = prepare(admit(spec).spec)
    feed = StreamFeed(data.stream, EqualShares(data.stream, 0, 2, plan.batches))
    rows = sum(len(feed.batch(c)[1]) for c in range(plan.batches))
    feed.close()
    assert rows in (data.n_train // 2, data.n_train - data.n_train // 2)
    assert data.n_train + len(data.x_val) + len(data.x_test) == 300


def test_csv_files_are_counted_at_admission_and_stream(tmp_path):
    (tmp_path / "c").mkdir()
    for f in range(2):
        lines = ["a,cat,y"] + [f"{i * 0.1},c{i % 5},{i % 2}" for i in range(150)]
        (tmp_path / "c" / f"{f}.csv").write_text("\n".join(lines))
    admission = admit(job(tmp_path / "c", test_split=0, validation_split=0))
    assert admission.data.rows == 300
    data, _, plan = prepare(admission.spec)
    feed = StreamFeed(data.stream, EqualShares(data.stream, 1, 2, plan.batches))
    _, y, ids = feed.batch(0)
    feed.close()
    assert data.n_train == 300 and ids.shape[1] == 1 and set(y.tolist()) <= {0.0, 1.0}


def test_what_streaming_cannot_hold_or_share_is_refused_at_admission(tmp_path):
    directory = write_files(tmp_path / "d")
    with pytest.raises(SpecError, match="holds its validation and test rows") as err:
        admit(job(directory, max_in_memory="64KiB", validation_split=0.5))
    assert err.value.path == "data.validation_split"
    (tmp_path / "n").mkdir()
    np.savez(tmp_path / "n" / "0.npz", X=np.zeros((50, 2)), y=np.arange(50) % 2)
    ensemble = {
        "data": {"source": str(tmp_path / "n" / "*.npz")},
        "model": {"layers": [{"type": "dense", "units": 2}]},
        "ensemble": {"members": 2},
    }
    with pytest.raises(SpecError, match="streaming: false") as err:
        admit(parse_spec(ensemble))
    assert err.value.path == "ensemble"


def test_a_file_broken_after_the_scan_fails_the_reader_with_its_name(tmp_path):
    write_files(tmp_path / "d")
    feed, _, _ = feed_of(job(tmp_path / "d", shuffle=False), 0)
    _corrupt(tmp_path / "d" / "part-0.parquet")
    with pytest.raises(SpecError, match="cannot read part-0.parquet"):
        feed.batch(0)
    feed.close()
