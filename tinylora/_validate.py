"""The argument checks every module shares, so the math is not buried in guards.

Each check names the argument, the value it got and what was expected, raises ``TypeError``
for the wrong kind of value and ``ValueError`` for a value out of range, and returns the value
in its plain Python form. ``where`` names the caller, e.g. ``"LoraConfig"``.

>>> check_int("r", 8, low=1)
8
>>> check_int("r", 0, low=1, where="LoraConfig")
Traceback (most recent call last):
...
ValueError: LoraConfig: r must be a positive int, got 0
>>> check_real("lr", True)
Traceback (most recent call last):
...
TypeError: lr must be a number, got True (bool)
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np

from .backend import get_array_module

__all__ = ["check_int", "check_real", "check_probability", "check_bool", "check_choice", "check_path",
           "check_float_dtype", "check_loaded_array", "is_int", "is_real"]


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools (``True`` is an int in Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """True for Python and NumPy real numbers, False for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounds(low, high, low_inclusive=True, high_inclusive=True) -> str:
    """'in [0, 1)', '>= 0', '> 0' or '<= 5': the expected range in words a reader knows."""
    low, high = (None if b is None else f"{b:g}" for b in (low, high))
    if low is not None and high is not None:
        return f"in {'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    if low is not None:
        return f"{'>=' if low_inclusive else '>'} {low}"
    return f"{'<=' if high_inclusive else '<'} {high}"


def _int_kind(low, high) -> str:
    if high is None and low == 1:
        return "a positive int"
    if high is None and low == 0:
        return "a non-negative int"
    return f"an int {_bounds(low, high)}"


def check_int(name: str, value, *, low: int | None = None, high: int | None = None, where: str = "") -> int:
    """An int (not a bool) in [low, high]; either bound may be None."""
    if not is_int(value):
        raise TypeError(f"{_prefix(where)}{name} must be an int, got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{_prefix(where)}{name} must be {_int_kind(low, high)}, got {value!r}")
    return int(value)


def check_real(name: str, value, *, low: float | None = None, high: float | None = None,
               low_inclusive: bool = True, high_inclusive: bool = True, finite: bool = True,
               where: str = "") -> float:
    """A real number (not a bool), finite unless ``finite=False``, within the given bounds."""
    if not is_real(value):
        raise TypeError(f"{_prefix(where)}{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{_prefix(where)}{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        bounds = _bounds(low, high, low_inclusive, high_inclusive)
        raise ValueError(f"{_prefix(where)}{name} must be a number {bounds}, got {value!r}")
    return value


def check_probability(name: str, value, *, allow_one: bool = False, where: str = "") -> float:
    """A probability in [0, 1) (or [0, 1] with ``allow_one=True``), such as a dropout rate."""
    return check_real(name, value, low=0.0, high=1.0, high_inclusive=allow_one, where=where)


def check_bool(name: str, value, *, where: str = "") -> bool:
    """Exactly True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{_prefix(where)}{name} must be True or False, "
                        f"got {value!r} ({type(value).__name__})")
    return value


def check_choice(name: str, value, choices, *, where: str = ""):
    """One of ``choices`` (compared with ==)."""
    if value not in tuple(choices):
        raise ValueError(f"{_prefix(where)}{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_path(name: str, value, *, where: str = "") -> str:
    """A str or os.PathLike that is not empty; returned as a str."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{_prefix(where)}{name} must be a path (str or os.PathLike), "
                        f"got {value!r} ({type(value).__name__})")
    path = os.fspath(value)
    if not path:
        raise ValueError(f"{_prefix(where)}{name} must be a non-empty path, got {value!r}")
    return path


def check_float_dtype(name: str, dtype, *, where: str = "") -> np.dtype:
    """A NumPy floating dtype (np.float16/32/64 or its name); returned as ``np.dtype``."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{_prefix(where)}{name} must be a NumPy floating dtype such as np.float32, "
                        f"got {dtype!r}") from None
    if dtype.kind != "f":
        raise TypeError(f"{_prefix(where)}{name} must be a floating dtype such as np.float32, got {dtype}")
    return dtype


def check_loaded_array(name: str, array, *, where: str = ""):
    """An array read from a file or a state dict: real numbers (bool, int or float dtype), all finite.

    Complex, object and string arrays raise ``TypeError``; NaN or inf raise ``ValueError`` naming the
    tensor and how many entries are bad. Works on NumPy and CuPy arrays alike; returns the array.

    >>> check_loaded_array("lm_head.weight", np.array([1.0, np.nan], dtype=np.float32))
    Traceback (most recent call last):
    ...
    ValueError: lm_head.weight holds 1 non-finite value (NaN or inf) of 2; refusing to load it
    """
    kind = getattr(getattr(array, "dtype", None), "kind", None)
    if kind not in ("b", "i", "u", "f"):
        raise TypeError(f"{_prefix(where)}{name} must be an array of real numbers (bool, int or float), "
                        f"got dtype {getattr(array, 'dtype', type(array).__name__)}")
    if kind == "f":
        bad = int((~get_array_module(array).isfinite(array)).sum())
        if bad:
            raise ValueError(f"{_prefix(where)}{name} holds {bad} non-finite value{'s' * (bad != 1)} "
                             f"(NaN or inf) of {array.size}; refusing to load it")
    return array

