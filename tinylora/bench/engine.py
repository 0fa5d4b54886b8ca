"""Engine benchmark: per-op autograd overhead on tiny tensors, and matmul throughput on large ones.

    tinylora bench engine            # or: python benchmarks/engine.py
    tinylora bench engine --quick    # fewer repeats: a smoke test, noisier numbers

(a) Tiny (4, 4) tensors measure the Python cost of recording an op, which dominates small
models; PyTorch runs the same ops for comparison. (b) Large matmuls measure whether the engine
adds anything on top of the three GEMMs of forward + backward (y = a @ w, da = g @ w.T,
dw = a.T @ g) that raw NumPy would run.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from ..tensor import Tensor
from .common import OneLineParser, environment_report, median_times

OVERHEAD_TARGET = 2.0  # engine time per op <= 2x PyTorch's
MATMUL_TARGET = 0.90  # engine matmul forward+backward >= 90% of raw NumPy's GFLOP/s

TINY_OPS = {
    "add": lambda x, y: x + y,
    "mul": lambda x, y: x * y,
    "matmul": lambda x, y: x @ y,
    "sum": lambda x, y: x.sum(),
    "exp": lambda x, y: x.exp(),
    "reshape": lambda x, y: x.reshape(-1),
}

MATMUL_CASES = [((16, 128, 256), (256, 768)), ((1024, 1024), (1024, 1024))]


def ten_op_expression(x, y):
    """Ten ops on (4, 4) inputs, written once for the engine and for PyTorch."""
    h = (x * y + x).tanh() @ y  # mul, add, tanh, matmul
    h = h - y.exp() * 0.5  # exp, mul, sub
    return h.relu().reshape(-1).sum()  # relu, reshape, sum


def _forward_backward(x, y):
    x.grad = y.grad = None
    ten_op_expression(x, y).backward()


def _tiny_inputs(rng, torch):
    """Two (4, 4) float32 tensors that require grad, for the engine and (if given) for PyTorch."""
    arrays = [rng.standard_normal((4, 4)).astype(np.float32) for _ in range(2)]
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays] if torch else None
    return ours, theirs


def per_op_overhead(repeat: int, number: int, torch=None) -> list[tuple[str, float, float | None]]:
    """(name, engine µs, torch µs or None) for each tiny op and the 10-op forward+backward."""
    ours, theirs = _tiny_inputs(np.random.default_rng(0), torch)
    cases = [(name, op, number) for name, op in TINY_OPS.items()]
    cases.append(("10-op fwd+bwd", _forward_backward, max(1, number // 10)))
    rows = []
    for name, op, calls in cases:
        fns = ({"engine": lambda: op(*ours), "torch": lambda: op(*theirs)} if torch
               else {"engine": lambda: op(*ours)})
        times = median_times(fns, repeat=repeat, warmup=2, number=calls)
        rows.append((name, times["engine"] * 1e6, times["torch"] * 1e6 if torch else None))
    return rows


def matmul_throughput(a_shape, w_shape, repeat: int) -> tuple[float, float]:
    """(engine GFLOP/s, raw NumPy GFLOP/s) of forward + backward of ``a @ w`` in float32."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(a_shape).astype(np.float32)  # (..., m, k)
    w = rng.standard_normal(w_shape).astype(np.float32)  # (k, n)
    g = rng.standard_normal(a_shape[:-1] + w_shape[-1:]).astype(np.float32)  # (..., m, n)
    k, n = w_shape
    flops = 3 * 2 * math.prod(a_shape[:-1]) * k * n

    def raw_numpy():
        a2, g2 = a.reshape(-1, k), g.reshape(-1, n)  # every row in one GEMM: (rows, k), (rows, n)
        return a2 @ w, g2 @ w.T, a2.T @ g2

    ta, tw = Tensor(a, requires_grad=True), Tensor(w, requires_grad=True)

    def engine():
        ta.grad = tw.grad = None
        (ta @ tw).backward(g)

    times = median_times({"engine": engine, "numpy": raw_numpy}, repeat=repeat, warmup=2)
    return flops / times["engine"] / 1e9, flops / times["numpy"] / 1e9


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_overhead(rows) -> None:
    print("\n(a) per-op autograd overhead: (4, 4) float32, requires_grad=True; median µs per call")
    print(f"{'op':<15}{'engine µs':>11}{'torch µs':>11}{'engine/torch':>14}"
          f"   target <= {OVERHEAD_TARGET:.0f}x")
    for name, engine, reference in rows:
        if reference is None:
            print(f"{name:<15}{engine:>11.2f}{'-':>11}{'-':>14}")
            continue
        ratio = engine / reference
        print(f"{name:<15}{engine:>11.2f}{reference:>11.2f}{ratio:>13.2f}x"
              f"   {_verdict(ratio <= OVERHEAD_TARGET)}")


def print_matmul(results) -> None:
    print("\n(b) matmul forward+backward (3 GEMMs), float32; GFLOP/s, median")
    print(f"{'case':<28}{'engine':>9}{'numpy':>9}{'engine/numpy':>14}   target >= {MATMUL_TARGET:.0%}")
    for (a_shape, w_shape), (engine, raw) in results:
        case = f"{a_shape} @ {w_shape}".replace(" ", "").replace("@", " @ ")
        ratio = engine / raw
        print(f"{case:<28}{engine:>9.1f}{raw:>9.1f}{ratio:>13.0%}   {_verdict(ratio >= MATMUL_TARGET)}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tinylora bench engine", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeat", type=int, default=31,
                        help="timed samples per measurement (the median is shown)")
    parser.add_argument("--number", type=int, default=2000, help="tiny-op calls per sample")
    parser.add_argument("--quick", action="store_true", help="5 samples of 200 calls: a fast, noisier run")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    repeat, number = (5, 200) if args.quick else (args.repeat, args.number)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
    environment_report()
    print_overhead(per_op_overhead(repeat, number, torch))
    print_matmul([(case, matmul_throughput(*case, repeat=max(5, repeat // 3))) for case in MATMUL_CASES])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
