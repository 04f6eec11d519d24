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
        "sparse_optimizer": {"name": "adagrad", "lr": 0.2},
        "training": {
            "workers": 2, "mode": "sync", "batch_size": 1000, "epochs": 100000,
            "max_steps": STEPS, **training,
        },
        "ps": {"shards": 2},
    }  # fmt: skip


def plain_loop(spec, steps: int):
    """The same model trained in one process: full-batch steps, ``torch.optim.SGD`` on the
    dense part and ``torch.optim.Adagrad`` on an ``nn.Embedding(sparse=True)`` table."""
    data = load_dataset(spec.data, spec.model.loss, spec.seed, None, spec.model.table.buckets)
    torch.manual_seed(spec.seed)
    net = build_model(spec.model, data.inputs, data.n_outputs)
    local = LocalRows(net, {0: data.ids_train.reshape(-1)}, spec.seed)
    dense = torch.optim.SGD(net.parameters(), lr=spec.optimizer["lr"])
    sparse = torch.optim.Adagrad(local.parameters(), lr=spec.sparse_optimizer["lr"])
    ids, x = torch.from_numpy(data.ids_train), torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train).float().reshape(-1, 1)
    for _ in range(steps):
        dense.zero_grad()
        sparse.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(ids, x), y).backward()
        dense.step()
        sparse.step()
    return net, local.rows(0)


@pytest.mark.parametrize("kind", ["fm", "deepfm"])
def test_rows_on_two_shards_from_two_sync_workers_equal_a_plain_pytorch_loop(
    ray_runtime, tmp_path, kind
):
    spec = parse_spec(ctr_spec(kind))
    result = run_job(spec, tmp_path)
    assert result.state == "SUCCEEDED" and result.steps == STEPS
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


def test_the_export_predicts_raw_rows_and_the_program_takes_hashed_ids(ray_runtime, tmp_path):
    spec = parse_spec(ctr_spec("fm", max_steps=5))
    run_job(spec, tmp_path)
    model = load_model(tmp_path / "model.pt")
    rows = [{"f0": 3, "f1": 7, "f2": 1, "f3": 2}, {"f0": 59, "f1": 0, "f2": 9, "f3": 4}]
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    probabilities = model.probabilities(rows)
    assert probabilities.shape == (2,) and ((probabilities > 0) & (probabilities < 1)).all()
    torch.testing.assert_close(model.probabilities(columns), probabilities)
    assert set(model.predict(rows).tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="f3"):
        model.predict([{"f0": 1, "f1": 1, "f2": 1}])
    program = torch.export.load(tmp_path / "model.pt2")
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
