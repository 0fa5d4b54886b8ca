"""The sweep folder's lock (one sweep writes a folder at a time) and the check that a folder can be written.

``folder_lock(DIR)`` takes an exclusive ``fcntl.flock`` on ``DIR/sweep.lock`` and holds it while the
sweep runs; the kernel drops it when the process ends, however it ends (kill -9 included), so a
stale lock never blocks a resume. The file keeps the holder's pid, for the message a second
sweep gets. (Where ``fcntl`` is missing, on Windows, the folder is not locked.)

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> with folder_lock(folder):
...     with folder_lock(folder):
...         pass
Traceback (most recent call last):
...
tinylora.experiments.folder.SweepFolderBusy: ...
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile

from .results import LOCK_NAME

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["SweepFolderBusy", "folder_lock", "check_writable_folder"]


class SweepFolderBusy(ValueError):
    """Another sweep holds the folder's lock."""


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f" (pid {text})" if text.isdigit() else ""


@contextlib.contextmanager
def folder_lock(directory):
    """Hold the exclusive lock on ``DIR/sweep.lock``; SweepFolderBusy at once when another process has it."""
    directory = os.fspath(directory)
    fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SweepFolderBusy(f"{directory!r} is in use by another sweep{_holder(fd)}; wait for it "
                                      "to finish, or use another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_writable_folder(path, what: str = "folder") -> str:
    """Create folder ``path`` if needed and check that a file can be written in it; returns ``path``.

    An OSError that names ``path`` otherwise: a file where the folder should be, a read-only
    folder, a parent that cannot be created.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(errno.ENOTDIR, f"{what} is a file, not a folder", path)
    os.makedirs(path, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise type(err)(err.errno, f"{what} cannot be written ({err.strerror})", path) from None
    return path
