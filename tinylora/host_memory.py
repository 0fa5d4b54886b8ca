"""Host memory reuse: keep freed NumPy buffers in the process instead of handing them back to the OS.

A training step allocates and frees the same large arrays (activations, logits, gradients) every
step. With glibc's default settings, freed memory at the top of the heap is returned to the
operating system, and the next step's first write to each new buffer page-faults again; on the
domain task this made a step about 20% slower, and it depended on the order in which arrays
happened to be freed. ``keep_freed_host_memory()`` sets glibc's trim and mmap thresholds
(``mallopt``) so freed buffers are reused. It changes speed only, never a number.

``fit`` calls it once per process. It does nothing on other C libraries (macOS, Windows, musl)
or when the environment sets ``TINYLORA_KEEP_FREED_MEMORY=0``.

>>> keep_freed_host_memory() in (True, False)
True
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_host_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
_MMAP_THRESHOLD = 32 * 1024 * 1024   # buffers up to 32 MiB come from the reusable heap (glibc's maximum)
_TRIM_THRESHOLD = 256 * 1024 * 1024  # keep up to 256 MiB of freed heap before returning it
_applied: bool | None = None


def keep_freed_host_memory() -> bool:
    """Apply the glibc settings once; True when they are in effect in this process."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("TINYLORA_KEEP_FREED_MEMORY", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
                    and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
