"""The argparse types of the command line's flags: each turns a bad value into a one-line error.

argparse reports a type's ``ArgumentTypeError`` as ``argument --FLAG: MESSAGE``, so every message
names the flag, the value it got and what was expected.

>>> _positive_int("4")
4
>>> _int_list(1, "1,2,4")("1,0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: expected comma-separated integers >= 1 such as 1,2,4, got '1,0'
"""
from __future__ import annotations

import argparse


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
