"""The user's own nn.Module (not in the repository: written to a temp dir here), conv and LSTM
models and batch norm: the same parity the dense MLP has, and clear refusals of bad modules."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ps.errors import SpecError
from ps.jobs.runner import run_job
from ps.spec import parse_spec
from tests.runtime.helpers import spec
from workers.models import load_model

STEPS = 12
LR = 0.05
USERNETS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def cnn():
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(16, 3),
        )

    class LastStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(2, 8, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    def lstm():
        return LastStep()

    def batch_norm(width=8):
        return nn.Sequential(nn.Linear(6, width), nn.BatchNorm1d(width), nn.Tanh(),
                             nn.Linear(width, 3))

    def smooth(out, y):
        return nn.functional.cross_entropy(out, y, label_smoothing=0.1)

    def raises():
        raise ValueError("boom")

    def not_a_module():
        return 42

    def no_parameters():
        return nn.ReLU()

    def bad_forward():
        return nn.Linear(5, 3)

    def wrong_outputs():
        return nn.Sequential(nn.Flatten(), nn.Linear(6, 5))
    """
)


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    root = tmp_path_factory.mktemp("usercode")
    (root / "usernets.py").write_text(USERNETS)
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    np.savez(root / "images.npz", X=rng.normal(size=(120, 1, 4, 4)) + y[:, None, None, None], y=y)
    np.savez(root / "sequences.npz", X=rng.normal(size=(120, 5, 2)) + y[:, None, None], y=y)
    np.savez(root / "table.npz", X=rng.normal(size=(120, 6)) + y[:, None], y=y)
    return root


def _job(code, module, data, workers=1, shards=1, **model):
    job = spec(
        data={
            "source": str(code / data),
            "validation_split": 0,
            "test_split": 0,
            "shuffle": False,
            "normalize": "none",
            "layout": "sequence" if data == "sequences.npz" else None,
        },
        optimizer={"name": "momentum", "lr": LR},
        training={
            "workers": workers,
            "mode": "sync",
            "batch_size": 1000,
            "epochs": 1000,
            "max_steps": STEPS,
        },
        ps={"shards": shards},
    )
    job["model"] = {"module": f"usernets:{module}", "code": str(code), **model}
    return job


def _train(code, tmp_path, name, *args, **kwargs):
    out = tmp_path / name
    result = run_job(parse_spec(_job(code, *args, **kwargs)), out)
    assert result.steps == STEPS
    return out


def _params_and_buffers(model: torch.nn.Module) -> torch.Tensor:
    values = [p.detach().reshape(-1) for p in model.parameters()]
    values += [b.reshape(-1) for b in model.buffers() if b.is_floating_point()]
    return torch.cat(values)


def _plain_loop(code, module, data, monkeypatch, halves=1):
    """The same module and torch.optim rule in a plain loop; with ``halves`` the batch is split
    as the workers split it and the halves' losses averaged (each half normalized by its own
    batch statistics; the running statistics averaged, as the shards do)."""
    monkeypatch.syspath_prepend(str(code))
    import usernets

    arrays = np.load(code / data)
    x = torch.from_numpy(arrays["X"].astype(np.float32))
    y = torch.from_numpy(arrays["y"].astype(np.int64))
    torch.manual_seed(0)
    net = getattr(usernets, module)()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    buffers = [b for b in net.buffers() if b.is_floating_point()]
    for _ in range(STEPS):
        opt.zero_grad()
        start = [b.clone() for b in buffers]
        ends = []
        for xs, ys in zip(x.chunk(halves), y.chunk(halves), strict=True):
            for b, s in zip(buffers, start, strict=True):
                b.copy_(s)
            (torch.nn.functional.cross_entropy(net(xs), ys) / halves).backward()
            ends.append([b.clone() for b in buffers])
        for i, b in enumerate(buffers):
            b.copy_(torch.stack([e[i] for e in ends]).mean(0))
        opt.step()
    return _params_and_buffers(net)


@pytest.mark.parametrize(("module", "data"), [("cnn", "images.npz"), ("lstm", "sequences.npz")])
def test_a_user_module_matches_a_plain_loop_and_workers_and_shards_change_nothing(
    ray_runtime, code, tmp_path, monkeypatch, module, data
):
    single = _train(code, tmp_path, "single", module, data)
    multi = _train(code, tmp_path, "multi", module, data, workers=2, shards=2)
    expected = _plain_loop(code, module, data, monkeypatch)
    ours = _params_and_buffers(load_model(single / "model.pt").net)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        _params_and_buffers(load_model(multi / "model.pt").net), ours, rtol=1e-5, atol=1e-6
    )


def test_batch_norm_workers_normalize_their_own_halves_and_average_the_statistics(
    ray_runtime, code, tmp_path, monkeypatch
):
    out = _train(code, tmp_path, "bn", "batch_norm", "table.npz", workers=2, shards=2)
    expected = _plain_loop(code, "batch_norm", "table.npz", monkeypatch, halves=2)
    ours = _params_and_buffers(load_model(out / "model.pt").net)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_a_custom_loss_is_used(ray_runtime, code, tmp_path):
    job = _job(code, "cnn", "images.npz", loss_fn="usernets:smooth")
    result = run_job(parse_spec(job), tmp_path)
    assert result.steps == STEPS and result.train_loss > 0.1  # label smoothing keeps it up


BAD = {
    "missing module": ("nowhere:build", "model.module", "cannot import 'nowhere'"),
    "raises": ("usernets:raises", "model.module", "ValueError: boom (at usernets.py:"),
    "not a module": ("usernets:not_a_module", "model.module", "returned a int"),
    "no parameters": ("usernets:no_parameters", "model.module", "without parameters"),
    "forward fails": ("usernets:bad_forward", "model.module", "the forward pass on a batch"),
    "wrong outputs": ("usernets:wrong_outputs", "model.module", "must return (batch, 3)"),
}


def test_bad_user_modules_are_refused_before_training_with_the_cause(ray_runtime, code, tmp_path):
    before = {a["name"] for a in __import__("ray").util.list_named_actors(all_namespaces=True)}
    for case, (module, path, text) in BAD.items():
        job = _job(code, "x", "table.npz")
        job["model"]["module"] = module
        with pytest.raises(SpecError) as info:
            run_job(parse_spec(job), tmp_path / case.replace(" ", "-"))
        assert info.value.path == path and text in info.value.message, (case, info.value)
        assert not (tmp_path / case.replace(" ", "-")).exists()
    after = {a["name"] for a in __import__("ray").util.list_named_actors(all_namespaces=True)}
    assert not after - before  # earlier jobs' actors may still be dying


def test_psctl_run_exits_2_for_a_bad_module(ray_runtime, code, tmp_path):
    import yaml

    from ps.cli import app

    job = _job(code, "raises", "table.npz")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    out = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml"), "-o", str(tmp_path / "o")])
    assert out.exit_code == 2, out.output
    assert "model.module" in out.output and "boom" in out.output
