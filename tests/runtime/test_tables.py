"""Embedding tables on the shards, end to end: a sync job with rows on two shards equals a plain
PyTorch loop (``nn.Embedding(sparse=True)`` and ``torch.optim``), AUC is reported, the export
predicts raw rows, and bad table settings are refused before any actor exists."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ps.errors import SpecError
from ps.jobs.admission import admit
from ps.jobs.runner import run_job
from ps.spec import parse_spec
from workers.data import load_dataset
from workers.models import build_model, load_model
from workers.sparse import LocalRows

STEPS = 25


def ctr_spec(kind: str = "fm", **training) -> dict:
    model = {"type": kind, "embedding": {"dim": 4, "buckets": 2**16}, "loss": "bce"}
    if kind == "deepfm":
        model["layers"] = [
            {"type": "dense", "units": 8, "activation": "tanh"},
            {"type": "dense", "units": 1},
        ]
    return {
        "seed": 3,
        "data": {
            "source": "synthetic-ctr", "n_samples": 800, "n_fields": 4, "n_ids": 60,
            "validation_split": 0.25, "test_split": 0, "shuffle": False,
        },
        "model": model,
        "optimizer": {"name": "sgd", "lr": 0.5},
        # An initial accumulator keeps Adagrad's first steps linear in tiny gradients, where
        # g/|g| would amplify the float rounding of two workers' different summation order.
        "sparse_optimizer": {"name": "adagrad", "lr": 0.2, "initial_accumulator_value": 0.1},
        "training": {
            "workers": 2, "mode": "sync", "batch_size": 1000, "epochs": 100000,
            "max_steps": STEPS, **training,
        },
        "ps": {"shards": 2},
    }  # fmt: skip


def plain_loop(spec, steps: int):
    """The same model trained in one process: full-batch steps, ``torch.optim.SGD`` on the
    dense part and ``torch.optim.Adagrad`` (or ``SGD``) on an ``nn.Embedding(sparse=True)``
    table."""
    data = load_dataset(spec.data, spec.model.loss, spec.seed, None, spec.model.table.buckets)
    torch.manual_seed(spec.seed)
    net = build_model(spec.model, data.inputs, data.n_outputs)
    local = LocalRows(net, {0: data.ids_train.reshape(-1)}, spec.seed)
    dense = torch.optim.SGD(net.parameters(), lr=spec.optimizer.lr)
    rows = spec.sparse_optimizer
    if rows.name == "adagrad":
        initial = rows.hypers["initial_accumulator_value"]
        sparse = torch.optim.Adagrad(
            local.parameters(), lr=rows.lr, initial_accumulator_value=initial
        )
    else:
        sparse = torch.optim.SGD(local.parameters(), lr=rows.lr)
    ids, x = torch.from_numpy(data.ids_train), torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train).float().reshape(-1, 1)
    for _ in range(steps):
        dense.zero_grad()
        sparse.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(ids, x), y).backward()
        dense.step()
        sparse.step()
    return net, local.rows(0)


@pytest.mark.parametrize("kind", ["deepfm"])
def test_rows_on_two_shards_from_two_sync_workers_equal_a_plain_pytorch_loop(
    ray_runtime, tmp_path, kind
):
    spec = parse_spec(ctr_spec(kind))
    result = run_job(spec, tmp_path)
    assert result.steps == STEPS
    net, (keys, rows) = plain_loop(spec, STEPS)
    trained = load_model(tmp_path / "model.pt")
    table = trained.net.embedding
    np.testing.assert_array_equal(table.ids[1:].numpy(), keys)  # every trained id, exported
    np.testing.assert_allclose(table.rows[1:].numpy(), rows, rtol=1e-4, atol=1e-5)
    for mine, theirs in zip(trained.net.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert 0.5 < saved["val_auc"] <= 1 and saved["train_auc"] > saved["val_auc"] - 0.1
    assert saved["table_rows"] == len(keys)
    evaluations = [
        json.loads(line)
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
        if '"evaluation"' in line
    ]
    assert evaluations and all("val_auc" in e for e in evaluations)
    check_export(tmp_path)


def check_export(run_dir):
    """The export predicts raw rows, and the pt2 program takes hashed ids."""
    model = load_model(run_dir / "model.pt")
    rows = [{"f0": 3, "f1": 7, "f2": 1, "f3": 2}, {"f0": 59, "f1": 0, "f2": 9, "f3": 4}]
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    probabilities = model.probabilities(rows)
    assert probabilities.shape == (2,) and ((probabilities > 0) & (probabilities < 1)).all()
    torch.testing.assert_close(model.probabilities(columns), probabilities)
    assert set(model.predict(rows).tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="f3"):
        model.predict([{"f0": 1, "f1": 1, "f2": 1}])
    program = torch.export.load(run_dir / "model.pt2")
    ids, x = model.encode(rows)
    torch.testing.assert_close(program.module()(ids, x), model(ids, x))


@pytest.mark.parametrize(
    ("change", "path", "text"),
    [
        ({"model": {"type": "fm", "embedding": {"dim": 0}}}, "model.embedding.dim", ""),
        ({"model": {"type": "fm", "embedding": {"buckets": 2**41}}}, "model.embedding.buckets", ""),
        ({"sparse_optimizer": {"name": "rmsprop"}}, "sparse_optimizer.name", "per-row"),
        ({"model": {"type": "fm", "embedding": {"dim": 64, "buckets": 2**40}},
          "data": {"n_samples": 10**6, "n_ids": 10**7, "n_fields": 60}},
         "model.embedding.buckets", "ps.max_table_bytes"),
        ({"data": {"source": "digits"}}, "model.type", "categorical"),
    ],
    ids=["dim", "buckets", "dense-only optimizer", "table beyond the budget", "no categorical"],
)  # fmt: skip
def test_bad_table_settings_are_refused_before_any_actor_with_the_key(change, path, text):
    raw = ctr_spec("fm")
    for section, values in change.items():
        raw[section] = {**raw[section], **values} if section in raw else values
    if raw["data"]["source"] == "digits":
        raw["data"] = {"source": "digits"}
    with pytest.raises(SpecError) as info:
        admit(parse_spec(raw))
    assert info.value.path == path and text in info.value.message, info.value


USER_MODULE = '''
import torch
from torch import nn

from workers.sparse import SparseEmbedding


class Net(nn.Module):
    """Ids (batch, fields) -> one logit, with its own SparseEmbedding."""

    def __init__(self, rows, dim, fields):
        super().__init__()
        self.emb = SparseEmbedding(rows, dim, std=0.1)
        self.out = nn.Linear(fields * dim, 1)

    def forward(self, ids, x):
        return self.out(self.emb(ids).flatten(1))


def build(rows, dim, fields):
    return Net(rows, dim, fields)
'''


def user_module_spec(tmp_path, rows: int):
    """The code directory of USER_MODULE, and a spec that trains it with ``rows`` rows on ids
    hashed into 4,096 buckets."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "sparse_net.py").write_text(USER_MODULE)
    raw = ctr_spec("fm")
    raw["model"] = {
        "module": "sparse_net:build",
        "kwargs": {"rows": rows, "dim": 3, "fields": 4},
        "code": str(code),
        "embedding": {"buckets": 4096},
        "loss": "bce",
    }
    return code, raw


def test_a_user_module_with_a_sparse_embedding_keeps_its_rows_on_the_shards(
    ray_runtime, tmp_path, monkeypatch
):
    """No ``row_keys``: the module's rows are fetched when it looks them up, the evaluation
    snapshots hold whole tables, and it still trains exactly as the plain loop does."""
    code, raw = user_module_spec(tmp_path, rows=4096)
    # SGD: linear in the gradient, so the different summation order of two workers stays at
    # float rounding (Adagrad's first step, g/|g|, amplifies it for tiny gradients).
    raw["sparse_optimizer"] = {"name": "sgd", "lr": 2.0}
    spec = parse_spec(raw)
    result = run_job(spec, tmp_path / "run")
    assert result.steps == STEPS and result.table_rows > 0
    monkeypatch.syspath_prepend(str(code))
    net, (keys, rows) = plain_loop(spec, STEPS)
    trained = load_model(tmp_path / "run" / "model.pt").net
    np.testing.assert_array_equal(trained.emb.ids[1:].numpy(), keys)
    np.testing.assert_allclose(trained.emb.rows[1:].numpy(), rows, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(trained.out.weight, net.out.weight, rtol=1e-4, atol=1e-5)


def test_ids_beyond_a_modules_table_and_unknown_columns_are_refused_before_any_actor(
    ray_runtime, tmp_path
):
    _, raw = user_module_spec(tmp_path, rows=1000)
    with pytest.raises(SpecError) as info:
        admit(parse_spec(raw))
    assert info.value.path == "model.embedding.buckets" and "'emb'" in info.value.message
    csv = tmp_path / "clicks.csv"
    csv.write_text("user,item,price,click\na,x,1.0,0\nb,y,2.0,1\n" * 20)
    raw = ctr_spec("fm")
    raw["data"] = {"source": str(csv), "target": "click", "categorical": ["user", "nope"]}
    with pytest.raises(SpecError) as info:
        admit(parse_spec(raw))
    assert info.value.path == "data.categorical" and "nope" in info.value.message


@pytest.mark.parametrize(
    "training",
    [{"mode": "sync", "sparse_staleness": 2}],
    ids=["sync dense, bounded tables"],
)
def test_tables_train_under_every_consistency_mode_on_csv_data(ray_runtime, tmp_path, training):
    """A csv file with string categories, a numeric column and missing values."""
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 3000), rng.integers(0, 30, 3000)
    price = rng.normal(size=3000)
    logit = np.where(users % 3 == 0, 1.5, -1.0) + np.where(items % 2 == 0, 1.0, -0.5) + price
    click = (rng.random(3000) < 1 / (1 + np.exp(-logit))).astype(int)
    lines = ["user,item,price,click"] + [
        f"{'' if u == 7 else f'u{u}'},i{i},{p:.3f},{c}"
        for u, i, p, c in zip(users, items, price, click, strict=True)
    ]
    csv = tmp_path / "clicks.csv"
    csv.write_text("\n".join(lines) + "\n")
    raw = ctr_spec("fm", **training, batch_size=64, max_steps=None, epochs=3)
    raw["data"] = {"source": str(csv), "target": "click", "categorical": ["user", "item"]}
    result = run_job(parse_spec(raw), tmp_path / "run")
    assert result.steps == result.total_steps
    assert result.test_auc > 0.75, result.test_auc
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.probabilities(
        {"user": ["u3", None], "item": ["i2", "i1"], "price": [0.1, 0.2]}
    ).shape == (2,)


def test_a_row_budget_with_admission_and_expiry_bounds_the_tables_of_a_job(ray_runtime, tmp_path):
    """Ever more ids than the budget (4 fields × 2,000 ids, max_rows 600 on 2 shards): the job
    takes its full step budget, its shards never hold more than max_rows, and the counters add
    up to the rows held; the export holds exactly the live rows."""
    raw = ctr_spec("fm", batch_size=32, max_steps=60)
    raw["data"]["n_ids"], raw["data"]["n_samples"] = 2000, 4000
    raw["model"]["embedding"].update(
        admit_after=2, max_rows=600, evict="lfu", expire_after_steps=20
    )
    result = run_job(parse_spec(raw), tmp_path)
    assert result.steps == result.total_steps == 60
    assert 0 < result.table_rows <= 600
    counts = {k: sum(s[k] for s in result.shards) for k in ("rows_admitted", "rows_evicted")}
    expired = sum(s["rows_expired"] for s in result.shards)
    assert counts["rows_evicted"] > 0 and expired > 0
    assert counts["rows_admitted"] - counts["rows_evicted"] - expired == result.table_rows
    model = load_model(tmp_path / "model.pt")
    trained = sum(m.ids.numel() - 1 for m in model.modules() if hasattr(m, "ids"))
    assert trained == result.table_rows
