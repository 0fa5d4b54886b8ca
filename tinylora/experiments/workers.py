"""Process pools for the sweep whose workers ignore Ctrl-C and die with the process that started them.

A kill -9 of the sweep gives it no chance to stop its pool, so each worker arranges its own end:
on Linux it asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``, through
ctypes), which is immediate and works even while the worker is busy inside a BLAS call; elsewhere
a daemon thread polls the parent pid twice a second. Ctrl-C reaches every process of the
terminal's process group, so workers ignore SIGINT and the sweep stops them (``stop_executor``)
instead of each printing a traceback.
"""
from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time

__all__ = ["make_process_pool", "stop_executor"]

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            if os.getppid() != parent_pid:  # the parent died before the request took effect
                os._exit(1)
            return
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _init_worker(parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    from tqdm import tqdm
    # tqdm's default lock is a multiprocessing semaphore; a worker stopped mid-run would leave it to
    # the resource tracker, which warns. Workers draw no bars, so a thread lock does.
    tqdm.set_lock(threading.RLock())


def make_process_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A ``spawn`` process pool of ``workers`` processes that ignore SIGINT and die with this process.

    Call it (and submit to it) from the thread that lives as long as the pool: on Linux a worker's
    "parent" for PR_SET_PDEATHSIG is the thread that started it.
    """
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_worker, initargs=(os.getpid(),))


def stop_executor(executor, now: bool) -> None:
    """Shut ``executor`` down: after its work (``now=False``), or at once, cancelling queued runs and
    terminating a process pool's workers, whose unfinished runs have nothing to save."""
    if not now:
        executor.shutdown(wait=True)
        return
    # a ProcessPoolExecutor's workers (Python 3.14 adds terminate_workers(); older ones have no public handle)
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
    try:  # with its workers gone, a pool's shutdown returns at once, and frees its queues' semaphores
        executor.shutdown(wait=bool(processes), cancel_futures=True)
    except TypeError:  # Dask's ClientExecutor has no cancel_futures
        executor.shutdown(wait=False)
