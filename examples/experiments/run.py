"""The deep-learning practice behind the service, as jobs with plots: each experiment runs its
variants as ordinary jobs on a local Ray, then writes ``results.md`` (a table), ``results.json``
and ``plot.png`` into ``runs/experiments/<name>/``.

    python examples/experiments/run.py                    # every experiment (make experiments)
    python examples/experiments/run.py augmentation l1-vs-l2
    python examples/experiments/run.py --list

Experiments: augmentation, dropout-vs-bagging, l1-vs-l2, capacity, batch-size, optimizers.
See docs/experiments.md for what each shows and the figures of a run.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "runs" / "experiments"

# 300 training rows of digits (1797 × (1 − 0.333 − 0.5)): small enough to overfit.
SMALL_DIGITS = {"source": "digits", "validation_split": 0.333, "test_split": 0.5}
MLP = [
    {"type": "dense", "units": 64, "activation": "relu", "init": "he_uniform"},
    {"type": "dense", "units": 10},
]
CNN = [
    {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "max_pool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "global_avg_pool"},
    {"type": "dense", "units": 10},
]


def job(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "seed": 0,
        "data": dict(SMALL_DIGITS),
        "model": {"layers": MLP},
        "optimizer": {"name": "adam", "lr": 0.003},
        "training": {"workers": 2, "mode": "sync", "batch_size": 32, "epochs": 60},
        "checkpoint": {"every_steps": 100000},
    }
    for key, value in sections.items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) else value
    return base


def slug(label: str) -> str:
    """A run directory's name for a variant's label."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def run(name: str, variant: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Train one variant; its result.json and history (evaluations) as plain data."""
    from ps.jobs.runner import run_job
    from ps.spec import parse_spec

    out = OUT / name / variant
    result = run_job(parse_spec(spec), out).to_dict()
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result["history"] = [
        e for e in history if e["type"] == "evaluation" and e.get("member") in (None, 0)
    ]
    result["run_dir"] = str(out)
    print(f"  {name} / {variant}: test accuracy {result['test_accuracy']}", flush=True)
    return result


def zero_fraction(run_dir: str) -> tuple[float, list[float]]:
    """The fraction of exactly-zero weights of a run's model, and the weights."""
    import torch

    from workers.models import load_model

    weights = torch.cat(
        [
            p.detach().reshape(-1)
            for n, p in load_model(Path(run_dir) / "model.pt").net.named_parameters()
            if n.endswith("weight")
        ]
    )
    return float((weights == 0).float().mean()), weights.tolist()


# -- the experiments -----------------------------------------------------------------------------
def augmentation() -> tuple[list[dict], Any]:
    """Zooming 300 training images lowers the gap; shifting 8×8 digits by a pixel is too much."""
    data = {**SMALL_DIGITS, "layout": "image"}
    rows = []
    for variant, aug in (
        ("without", None),
        ("zoom 0.9-1.1", {"scale": [0.9, 1.1]}),
        ("shift 1 px + rotate 10°", {"shift": 1, "rotate": 10}),
    ):
        spec = job(data=data if aug is None else {**data, "augment": aug}, model={"layers": CNN})
        spec["training"]["epochs"] = 150
        rows.append(_row(variant, run("augmentation", slug(variant), spec)))
    return rows, _curves


def dropout_vs_bagging() -> tuple[list[dict], Any]:
    """Dropout, a 5-member bagging ensemble of the same CNN, both, and neither."""
    dropped = [*CNN[:-1], {"type": "dropout", "rate": 0.3}, CNN[-1]]
    # mean: the ensemble's loss is the log loss of its averaged probabilities, comparable with
    # a single network's (a vote's is not a probability).
    ensemble = {"members": 5, "bootstrap": True, "combine": "mean"}
    small = {"workers": 1, "worker_resources": {"num_cpus": 0.4}}
    rows = []
    for variant, layers, ens in (
        ("neither", CNN, None), ("dropout", dropped, None),
        ("bagging (5)", CNN, ensemble), ("both", dropped, ensemble),
    ):  # fmt: skip
        spec = job(
            data={**SMALL_DIGITS, "layout": "image"}, model={"layers": layers}, training=small
        )
        spec["training"]["epochs"] = 100
        if ens:
            spec["ensemble"] = ens
        r = run("dropout-vs-bagging", slug(variant), spec)
        row = _row(variant, r)
        members = [m["test_accuracy"] for m in r["members"]]
        row["mean member test accuracy"] = sum(members) / len(members) if members else None
        rows.append(row)
    return rows, _bars("test_accuracy", "test accuracy")


def l1_vs_l2() -> tuple[list[dict], Any]:
    """At equal strength L1 (proximal) sets most weights exactly to zero; L2 only shrinks them."""
    rows = []
    for variant, reg in (
        ("none", {}), ("L2 0.01", {"l2": 0.01}), ("L1 0.01 (proximal)", {"l1": 0.01, "l1_mode": "proximal"}),
    ):  # fmt: skip
        r = run(
            "l1-vs-l2",
            slug(variant),
            job(regularization=reg, optimizer={"name": "sgd", "lr": 0.1}),
        )
        row = _row(variant, r)
        row["zero weights"], row["_weights"] = zero_fraction(r["run_dir"])
        rows.append(row)
    return rows, _weights


def capacity() -> tuple[list[dict], Any]:
    """Too small underfits, a large network overfits 300 rows: the seed's first section."""
    rows = []
    for variant, units in (
        ("too small (2 units)", 2),
        ("right (32 units)", 32),
        ("too large (2×1024)", 1024),
    ):
        layers = [{"type": "dense", "units": units, "activation": "relu", "init": "he_uniform"}]
        if units == 1024:
            layers = layers * 2
        r = run(
            "capacity",
            slug(variant),
            job(
                model={"layers": [*layers, {"type": "dense", "units": 10}]},
                training={"epochs": 150},
            ),
        )
        rows.append(_row(variant, r))
    return rows, _curves


def batch_size() -> tuple[list[dict], Any]:
    """The same budget of samples with batch sizes 8 … 1024: small batches make more (noisier)
    updates and cost more per sample; large ones make few."""
    data = {"source": "digits", "validation_split": 0.1, "test_split": 0.2}
    rows = []
    for batch in (8, 32, 128, 512, 1024):
        r = run(
            "batch-size",
            str(batch),
            job(
                data=data,
                training={"workers": 1, "batch_size": batch, "epochs": 20},
                optimizer={"name": "sgd", "lr": 0.05},
            ),
        )
        rows.append(
            _row(f"batch {batch}", r) | {"updates": r["steps"], "samples/s": r["samples_per_s"]}
        )
    return rows, _batch


def optimizers() -> tuple[list[dict], Any]:
    """Momentum vs NAG vs the adaptive rules on the same network, data and steps."""
    rows = []
    for variant, opt in (
        ("sgd", {"name": "sgd", "lr": 0.05}), ("momentum", {"name": "momentum", "lr": 0.05}),
        ("nag", {"name": "nag", "lr": 0.05}), ("adagrad", {"name": "adagrad", "lr": 0.05}),
        ("rmsprop", {"name": "rmsprop", "lr": 0.001}), ("adam", {"name": "adam", "lr": 0.003}),
    ):  # fmt: skip
        r = run("optimizers", variant, job(optimizer=opt, training={"epochs": 30}))
        rows.append(_row(variant, r))
    return rows, _curves


EXPERIMENTS = {
    "augmentation": augmentation,
    "dropout-vs-bagging": dropout_vs_bagging,
    "l1-vs-l2": l1_vs_l2,
    "capacity": capacity,
    "batch-size": batch_size,
    "optimizers": optimizers,
}


# -- tables and plots ----------------------------------------------------------------------------
def _row(variant: str, r: dict[str, Any]) -> dict[str, Any]:
    gap = None if r["val_loss"] is None else r["val_loss"] - r["train_loss"]
    return {
        "variant": variant, "train loss": r["train_loss"], "val loss": r["val_loss"],
        "generalization gap": gap, "test_accuracy": r["test_accuracy"], "wall s": r["wall_time_s"],
        "_history": r["history"],
    }  # fmt: skip


def _curves(ax_pair, rows):
    loss, acc = ax_pair
    for i, row in enumerate(rows):
        steps = [e["step"] for e in row["_history"]]
        color = f"C{i}"
        loss.plot(steps, [e["train_loss"] for e in row["_history"]], color=color, ls="--")
        loss.plot(
            steps, [e["val_loss"] for e in row["_history"]], color=color, label=row["variant"]
        )
        acc.plot(
            steps, [e["val_accuracy"] for e in row["_history"]], color=color, label=row["variant"]
        )
    loss.set(xlabel="step", ylabel="loss (dashed: training, solid: validation)", yscale="log")
    acc.set(xlabel="step", ylabel="validation accuracy")
    loss.legend()


def _bars(key: str, label: str):
    def draw(ax_pair, rows):
        ax, gap = ax_pair
        names = [r["variant"] for r in rows]
        ax.bar(names, [r[key] for r in rows], color=[f"C{i}" for i in range(len(rows))])
        means = [(n, r.get("mean member test accuracy")) for n, r in zip(names, rows, strict=True)]
        means = [(n, m) for n, m in means if m is not None]
        if means:
            ax.plot(*zip(*means, strict=True), "kD", label="its mean member")
            ax.legend()
        low = min([r[key] for r in rows] + [m for _, m in means])
        ax.set(ylabel=label, ylim=(low - 0.03, 1.0))
        gap.bar(
            names,
            [r["generalization gap"] for r in rows],
            color=[f"C{i}" for i in range(len(rows))],
        )
        gap.set(ylabel="generalization gap (val − train loss)")

    return draw


def _weights(ax_pair, rows):
    import numpy as np

    hist, bar = ax_pair
    for i, row in enumerate(rows):
        w = np.abs(np.asarray(row["_weights"]))
        hist.hist(np.log10(w[w > 0]), bins=60, histtype="step", color=f"C{i}", label=row["variant"])
    hist.set(xlabel="log10 |weight| (nonzero weights)", ylabel="count")
    hist.legend()
    bar.bar(
        [r["variant"] for r in rows],
        [r["zero weights"] for r in rows],
        color=[f"C{i}" for i in range(len(rows))],
    )
    bar.set(ylabel="fraction of weights exactly 0")


def _batch(ax_pair, rows):
    loss, time_ax = ax_pair
    sizes = [int(r["variant"].split()[1]) for r in rows]
    loss.plot(sizes, [r["val loss"] for r in rows], "o-", label="validation loss")
    loss.plot(sizes, [r["train loss"] for r in rows], "o--", label="training loss")
    loss.set(
        xscale="log", xlabel="batch size (same samples in all)", ylabel="final loss", yscale="log"
    )
    loss.legend()
    time_ax.plot(sizes, [r["wall s"] for r in rows], "o-")
    time_ax.set(xscale="log", xlabel="batch size", ylabel="training wall time (s)")


def write(name: str, rows: list[dict], draw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    (out / "results.json").write_text(json.dumps(public, indent=2))
    keys = list(public[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in public:
        lines.append("| " + " | ".join(_fmt(r[k]) for k in keys) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    draw(axes, rows)
    fig.suptitle(f"{name}: {EXPERIMENTS[name].__doc__.splitlines()[0]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "plot.png", dpi=90)
    plt.close(fig)
    print("\n".join(lines) + f"\n  -> {out / 'plot.png'}\n", flush=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
    return "—" if v is None else str(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments to run (default: all)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        for name, fn in EXPERIMENTS.items():
            print(f"{name}: {fn.__doc__.splitlines()[0]}")
        return
    unknown = [n for n in args.names if n not in EXPERIMENTS]
    if unknown:
        sys.exit(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    sys.path.insert(0, str(ROOT))
    from ps.jobs.runner import ray_session

    with ray_session():  # a local Ray of its own (or the one RAY_ADDRESS names)
        for name in args.names or EXPERIMENTS:
            print(f"# {name}", flush=True)
            rows, draw = EXPERIMENTS[name]()
            write(name, copy.deepcopy(rows), draw)


if __name__ == "__main__":
    main()
