"""Helpers shared by the benchmarks: a robust timer and a report of what the numbers ran on.

>>> seconds = median_time(lambda: sum(range(100)), repeat=5, warmup=1)
>>> seconds > 0
True
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (with where to find the usage), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def peak_rss_bytes() -> int:
    """This process's peak resident memory.

    Linux: VmHWM, since ru_maxrss keeps the parent's peak across exec; ru_maxrss elsewhere.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, others KiB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def batch_of_ids(config, batch: int, seed: int = 0):
    """Random inputs and targets, each (batch, block_size) int64."""
    rng = np.random.default_rng(seed)
    shape = (batch, config.block_size)
    return rng.integers(0, config.vocab_size, shape), rng.integers(0, config.vocab_size, shape)


def timing_samples(fns: dict, repeat: int = 21, warmup: int = 3, number: int = 1) -> dict:
    """Seconds per call of each function: ``repeat`` samples each, ``warmup`` rounds discarded.

    The functions take turns, and the order rotates every round (A B C, then B C A, ...): a
    change in machine load slows every function alike, and none always runs first (on a shared
    machine the first in a round is measurably faster). Each sample times ``number``
    back-to-back calls, for microsecond-scale functions.
    """
    names, samples = list(fns), {name: [] for name in fns}
    for i in range(warmup + repeat):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            for _ in range(number):
                fns[name]()
            if i >= warmup:
                samples[name].append((time.perf_counter() - start) / number)
    return samples


def median_times(fns: dict, repeat: int = 21, warmup: int = 3, number: int = 1) -> dict:
    """The median of ``timing_samples`` for each function: robust to the odd slow sample."""
    return {name: statistics.median(times)
            for name, times in timing_samples(fns, repeat, warmup, number).items()}


def median_time(fn, repeat: int = 21, warmup: int = 3, number: int = 1) -> float:
    """Median wall time of one ``fn()`` call, in seconds."""
    return median_times({"fn": fn}, repeat, warmup, number)["fn"]


def training_step(model, x, y, lr: float = 1e-3, weight_decay: float = 0.0):
    """A zero-argument function running one forward, backward and AdamW step on (x, y); and its optimizer.

    Only parameters with ``requires_grad`` are optimised, so a LoRA model updates only its adapters.
    """
    from ..optim import AdamW

    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)

    def step():
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step, optimizer


def _blas_lines() -> list[str]:
    """One line per BLAS/OpenMP library NumPy loaded (threadpoolctl), else NumPy's build summary."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [f"BLAS (numpy build): {_numpy_build_blas()} (pip install threadpoolctl for the runtime view)"]
    return [", ".join(filter(None, [
                f"{pool['user_api']}: {pool['internal_api']} {pool.get('version') or ''}".strip(),
                f"{pool['num_threads']} threads",
                pool.get("architecture") and f"architecture {pool['architecture']}"]))
            for pool in threadpool_info()]


def _numpy_build_blas() -> str:
    try:
        config = np.show_config(mode="dicts")  # NumPy >= 1.25
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def environment_report() -> str:
    """Print (and return) Python/NumPy versions, the BLAS in use, thread counts and OpenBLAS variables."""
    lines = [f"Python {platform.python_version()} ({sys.executable})",
             f"NumPy {np.__version__}, platform {platform.platform()}",
             f"CPUs usable by this process: {_cpu_count()}",
             *_blas_lines(),
             "threads: " + ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in _THREAD_VARIABLES)]
    try:
        import torch
        lines.append(f"PyTorch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    except ImportError:
        lines.append("PyTorch not installed (comparisons skipped)")
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        lines.append(f"{name}={os.environ.get(name, 'unset')}")
    if os.environ.get("OPENBLAS_CORETYPE"):
        lines.append("note: OPENBLAS_CORETYPE is set; on these machines it forces a slower OpenBLAS kernel "
                     "and NumPy matmuls run slower. "
                     "Unset it in the shell (not in code) for full-speed numbers.")
    text = "\n".join(lines)
    print(text)
    return text
