"""The `tinylora` command line."""
from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    """Fit y = 3x - 1 with the engine: the smallest end-to-end training loop."""
    import numpy as np

    from .tensor import Tensor

    rng = np.random.default_rng(args.seed)
    x = Tensor(rng.uniform(-1, 1, size=(64, 1)).astype(np.float32))
    y = x * 3.0 - 1.0
    w = Tensor(np.zeros((1, 1), np.float32), requires_grad=True)
    b = Tensor(np.zeros((1,), np.float32), requires_grad=True)
    for step in range(args.steps + 1):
        loss = ((x @ w + b - y) ** 2).mean()
        w.grad = b.grad = None
        loss.backward()
        w.data -= 0.5 * w.grad
        b.data -= 0.5 * b.grad
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:4d}  loss {loss.item():.6f}")
    print(f"learned w={w.item():.4f} b={b.item():.4f} (true 3, -1)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinylora", description=__doc__ or "tinylora command line",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="train a tiny linear model with the engine and print its loss",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--steps", type=int, default=100, help="gradient-descent steps")
    demo.add_argument("--seed", type=int, default=0, help="random seed for the data")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
