"""Ctrl-C that is never lost: a KeyboardInterrupt that would land inside a ``__del__`` is put off.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives. Inside a
finalizer (``__del__``, such as the one that releases a graph node's saved tensors) the exception
cannot propagate: Python prints "Exception ignored in ..." and drops it, so the program goes on as
if Ctrl-C had never been pressed. ``ctrl_c_outside_finalizers()`` installs a SIGINT handler that
raises as usual, except inside a finalizer: there it asks again 10 ms later, from a timer thread,
until the main thread is somewhere the exception can reach the caller.
"""
from __future__ import annotations

import _thread
import contextlib
import signal
import threading

__all__ = ["ctrl_c_outside_finalizers", "in_finalizer", "RETRY_SECONDS"]

RETRY_SECONDS = 0.01


def in_finalizer(frame) -> bool:
    """True when ``frame``, or a frame that called it, is running a ``__del__``."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _handler(signum, frame):
    if in_finalizer(frame):  # raising here would be printed and dropped: try again soon
        timer = threading.Timer(RETRY_SECONDS, _thread.interrupt_main)
        timer.daemon = True
        timer.start()
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_outside_finalizers():
    """Within the block, Ctrl-C raises KeyboardInterrupt only outside finalizers (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
