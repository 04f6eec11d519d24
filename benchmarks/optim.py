"""Update-rule speed: ours vs torch.optim's fastest implementation of the same rule.

For every rule at 1M and 10M float32 parameters, time one in-place step of ours
(``ps.optim.build``) and of torch.optim (fused where torch has a fused CPU kernel, else foreach)
in the same process, interleaved so that machine noise hits both alike, and print ms/step and the
ratio ours/torch (below 1.0: ours is faster).

    python benchmarks/optim.py [--sizes 1000000 10000000] [--reps 10] [--rules adam sgd]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date

import torch

from ps.optim import RULES, build

# torch.optim class, extra kwargs, and which fast implementation it has on CPU.
TORCH = {
    "sgd": (torch.optim.SGD, {}, "fused"),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}, "fused"),
    "nag": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, "fused"),
    "adagrad": (torch.optim.Adagrad, {}, "fused"),
    "adadelta": (torch.optim.Adadelta, {}, "foreach"),
    "rmsprop": (torch.optim.RMSprop, {}, "foreach"),
    "adam": (torch.optim.Adam, {}, "fused"),
    "adamax": (torch.optim.Adamax, {}, "foreach"),
    "adamw": (torch.optim.AdamW, {}, "fused"),
}


def _time(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e3


def measure(name: str, n: int, reps: int, rounds: int = 5) -> tuple[float, float, str]:
    """Median ms/step of ours and torch's over ``rounds`` interleaved rounds of ``reps`` steps."""
    gen = torch.Generator().manual_seed(0)
    w0, g = torch.randn(n, generator=gen), torch.randn(n, generator=gen) * 1e-3
    ours = build({"name": name, "lr": 1e-4})
    params, grads = w0.clone(), torch.empty(n)
    state = ours.init(params)

    def ours_step():
        grads.copy_(g)  # a step consumes its gradient buffer; torch's reads .grad, also refilled
        ours.step(params, grads, state)

    cls, kwargs, impl = TORCH[name]
    ref = torch.nn.Parameter(w0.clone())
    ref.grad = torch.empty(n)
    torch_opt = cls([ref], lr=1e-4, **{impl: True}, **kwargs)

    def torch_step():
        ref.grad.copy_(g)
        torch_opt.step()

    for fn in (ours_step, torch_step):
        fn(), fn()
    a, b = [], []
    for _ in range(rounds):
        a.append(_time(ours_step, reps))
        b.append(_time(torch_step, reps))
    return statistics.median(a), statistics.median(b), impl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rules", nargs="+", default=list(RULES))
    args = parser.parse_args()
    print(
        f"# ps.optim vs torch.optim — {date.today()} — {platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    print("(times include refilling the gradient buffer, one memcpy, on both sides)\n")
    print("| rule | params | ours ms/step | torch ms/step | torch impl | ratio ours/torch |")
    print("|---|---:|---:|---:|---|---:|")
    for n in args.sizes:
        for name in args.rules:
            ours, ref, impl = measure(name, n, args.reps)
            print(f"| {name} | {n:,} | {ours:.2f} | {ref:.2f} | {impl} | {ours / ref:.2f} |")


if __name__ == "__main__":
    main()
