"""Helpers shared by the benchmarks: a robust timer and a report of what the numbers ran on.

>>> seconds = median_time(lambda: sum(range(100)), repeat=5, warmup=1)
>>> seconds > 0
True
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time

import numpy as np

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def median_time(fn, repeat: int = 21, warmup: int = 3, number: int = 1) -> float:
    """Median wall time of one ``fn()`` call, in seconds.

    Each of the ``repeat`` samples times ``number`` back-to-back calls (use a large ``number``
    for microsecond-scale functions, so the timer's own cost is negligible); ``warmup`` samples
    run first and are discarded. The median ignores the odd slow sample (a page fault, another
    process).
    """
    return median_times({"fn": fn}, repeat, warmup, number)["fn"]


def median_times(fns: dict, repeat: int = 21, warmup: int = 3, number: int = 1) -> dict:
    """``median_time`` for several functions, sampled in turn (A, B, A, B, ...).

    Interleaving means a change in machine load during the run slows every function alike,
    so their ratio stays meaningful on a shared machine.
    """
    samples = {name: [] for name in fns}
    for i in range(warmup + repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            if i >= warmup:
                samples[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(times) for name, times in samples.items()}


def _blas_lines() -> list[str]:
    """One line per BLAS/OpenMP library NumPy loaded (threadpoolctl), else NumPy's build summary."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [f"BLAS (numpy build): {_numpy_build_blas()} (pip install threadpoolctl for the runtime view)"]
    return [", ".join(filter(None, [f"{pool['user_api']}: {pool['internal_api']} {pool.get('version') or ''}".strip(),
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
        lines.append("note: OPENBLAS_CORETYPE is set; on these machines it forces a slower OpenBLAS kernel and "
                     "NumPy matmuls run slower. Unset it in the shell (not in code) for full-speed numbers.")
    text = "\n".join(lines)
    print(text)
    return text
