"""The command line's checks and error lines: argparse types, output checks, one-line errors.

argparse reports a type's ``ArgumentTypeError`` as ``argument --FLAG: MESSAGE``, so every message
names the flag, the value it got and what was expected. ``_one_line`` is the form every other
error takes (an OSError as ``PATH: what went wrong``), and ``_failed_run`` tells a failed run
(exit 1) from bad input (exit 2).

>>> _positive_int("4")
4
>>> _int_list(1, "1,2,4")("1,0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: expected comma-separated integers >= 1 such as 1,2,4, got '1,0'
"""
from __future__ import annotations

import argparse
import errno
import os


def _non_empty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("expected a non-empty text, got ''")
    return text


def _positive_float(text: str) -> float:
    value = _parsed(float, text, "a number")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _parsed(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = _parsed(float, text, "a number")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _probability(text: str) -> float:
    value = _parsed(float, text, "a number")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _parsed(kind, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _int_list(low: int, example: str):
    """The type of a comma-separated list of integers >= ``low``, such as ``--ranks 1,2,4``."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            values = ()
        if not values or min(values) < low:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers >= {low} such as {example}, "
                                             f"got {text!r}")
        return values
    parse.__name__ = "integer list"
    return parse


def _name_list(text: str) -> tuple:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _check_output_file(path: str, flag: str) -> None:
    """``path`` can be written as a file: it is not a folder, and its folder is writable (made if needed)."""
    from .experiments.folder import check_writable_folder

    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"{flag} is a folder; give a file name such as model.npz", path)
    check_writable_folder(os.path.dirname(os.path.abspath(path)), f"the folder of {flag}")


# What Ctrl-C leaves behind, per command (every file tinylora writes is written whole or not at all).
INTERRUPTED = {None: "nothing was written",
               "pretrain": "no checkpoint was written (it is saved when training ends)",
               "plot": "the figures already written are kept, each one whole"}


def _failed_run(err: Exception) -> bool:
    """An OSError of the machine (disk full, I/O error), not of the input: exit 1, not 2."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO)


def _one_line(err: Exception) -> str:
    """The error in one line; an OSError as 'PATH: what went wrong'."""
    if isinstance(err, OSError) and err.filename is not None:
        target = f" -> {err.filename2}" if err.filename2 is not None else ""
        return f"{err.filename}{target}: {err.strerror or err}"
    return " ".join(str(err).split())
