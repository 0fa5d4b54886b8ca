"""The grading engine: run a student's function on cases, compare, and explain what is wrong.

An ``Exercise`` names its outputs and its fallback hints; a ``Case`` holds one call's
arguments, the expected outputs (computed with tinylora's own ops) and the usual wrong answers
with their targeted hints. ``grade`` runs every case and raises ``AssertionError`` at the
first wrong output, naming the case, the first wrong element (expected vs got) and the hint
of the mistake the output matches. A stub that still raises NotImplementedError gets
``ExerciseNotDone``, a friendly AssertionError.

>>> import numpy as np
>>> ex = Exercise(0, "double", (Output("y", shape_of="x"),), hint="y = 2 x")
>>> cases = [Case({"x": np.arange(3.0)}, (np.arange(3.0) * 2,), [(0, np.arange(3.0), "you returned x")])]
>>> grade(ex, lambda x: 2 * x, cases)
1
>>> grade(ex, lambda x: x, cases)    # doctest: +ELLIPSIS
Traceback (most recent call last):
...
AssertionError: Exercise 0 (double), case 1 of 1: <lambda>(x (3,))
y is wrong at 2 of 3 elements; ...
Hint: you returned x
"""
from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from ..tensor import Tensor

__all__ = ["ExerciseNotDone", "Output", "Case", "Exercise", "grade", "maybe", "passed", "case_rng",
           "RTOL", "ATOL"]

RTOL, ATOL = 1e-6, 1e-9


class ExerciseNotDone(AssertionError):
    """The student's function still raises NotImplementedError."""


@dataclass
class Output:
    """One value the student's function returns: its name, its kind and where its shape comes from."""

    name: str
    kind: str = "float"       # "float" array, "bool" array, "int" scalar or "scalar" (a float)
    shape_of: str = ""        # e.g. "a": the expected shape is a's


@dataclass
class Case:
    """One call: arguments by name, the expected outputs, and the usual wrong answers with their hints."""

    args: dict
    expected: tuple
    mistakes: list = field(default_factory=list)   # (output index, wrong value, hint)


@dataclass
class Exercise:
    """What a checker needs besides its cases: the title, the outputs and the fallback hints."""

    number: int
    title: str
    outputs: tuple
    hint: str                 # shown when the wrong output matches no known mistake
    error_hint: str = ""      # shown when the student's function raises
    nan_hint: str = ""        # shown when an output holds NaN or inf


# ---- describing values in messages -------------------------------------------------------------
def _describe(value) -> str:
    if value is None:
        return "None (is a `return` statement missing?)"
    if isinstance(value, Tensor):
        return f"a tinylora Tensor of shape {value.shape}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


def _label(args: dict) -> str:
    parts = []
    for name, value in args.items():
        if isinstance(value, np.ndarray):
            parts.append(f"{name} {value.shape}")
        elif isinstance(value, list) and len(value) > 4:
            parts.append(f"{name} = [{', '.join(map(str, value[:3]))}, ...] ({len(value)} items)")
        else:
            parts.append(f"{name}={value!r}")
    return ", ".join(parts)


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)


def _numbers(a: np.ndarray, count: int = 4) -> str:
    flat = np.asarray(a).reshape(-1)
    shown = ", ".join(_fmt(v) for v in flat[:count])
    return f"[{shown}{', ...' if flat.size > count else ''}]"


# ---- calling the student's function -------------------------------------------------------------
def _check_callable(ex: Exercise, fn, name: str) -> None:
    __tracebackhide__ = True  # IPython and pytest then show the student's cell, not the checker's insides
    if not callable(fn):
        raise AssertionError(f"Exercise {ex.number} ({ex.title}): the checker needs your "
                             "function itself, as in `check(my_function)` without "
                             f"parentheses after my_function; got {_describe(fn)} for {name}.")


def _call(ex: Exercise, fn, case: Case, where: str):
    """fn(**args) with NotImplementedError, other errors and in-place changes turned into verdicts."""
    __tracebackhide__ = True
    name = getattr(fn, "__name__", "your function")
    before = copy.deepcopy(case.args)
    try:
        got = fn(*case.args.values())
    except NotImplementedError as err:
        what = str(err).removeprefix(f"Exercise {ex.number}:").strip() or "the stub still raises"
        raise ExerciseNotDone(f"Exercise {ex.number} is not implemented yet: {what}. "
                              f"Replace the `raise NotImplementedError(...)` line of {name} "
                              "with your code, run that cell, then run the check again.") from None
    except Exception as err:
        hint = f"\nHint: {ex.error_hint}" if ex.error_hint else ""
        raise AssertionError(f"{where}\n{name} raised {type(err).__name__}: {err}{hint}") from err
    for arg, value in case.args.items():
        if isinstance(value, np.ndarray) and not np.array_equal(value, before[arg]):
            raise AssertionError(f"{where}\n{name} changed its input {arg} in place. Leave the inputs alone "
                                 "and build a new array (write `W = W0 + ...`, not `W0 += ...`).")
    return got


def _unpack(ex: Exercise, got, where: str, name: str) -> tuple:
    __tracebackhide__ = True
    if len(ex.outputs) == 1:
        return (got,)
    names = ", ".join(o.name for o in ex.outputs)
    if not isinstance(got, (tuple, list)) or len(got) != len(ex.outputs):
        raise AssertionError(f"{where}\n{name} should return a tuple of "
                             f"{len(ex.outputs)} arrays ({names}); got {_describe(got)}.")
    return tuple(got)


# ---- validating one output ----------------------------------------------------------------------
def _as_array(ex: Exercise, out: Output, value, where: str) -> np.ndarray:
    __tracebackhide__ = True
    what = "a bool" if out.kind == "bool" else "a float"
    if isinstance(value, Tensor):
        raise AssertionError(f"{where}\n{out.name} should be {what} NumPy array, but it is a tinylora "
                             "Tensor; these exercises work on plain arrays (a Tensor's array is `t.data`).")
    if isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, (bool, np.bool_)) \
            and out.kind == "float":
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        tip = " (convert it with np.array(...))" if isinstance(value, (list, tuple)) else ""
        raise AssertionError(f"{where}\n{out.name} should be {what} "
                             f"NumPy array; got {_describe(value)}{tip}.")
    if out.kind == "bool" and value.dtype != bool:
        raise AssertionError(f"{where}\n{out.name} should be an array of dtype bool (True = may attend); "
                             f"got dtype {value.dtype}. Build it as bool, e.g. np.ones((T, T), dtype=bool), "
                             "or convert with .astype(bool).")
    if out.kind == "float":
        if value.dtype.kind not in "fiu":
            raise AssertionError(f"{where}\n{out.name} should be a float array; got dtype {value.dtype}.")
        if not np.all(np.isfinite(value)):
            hint = f"\nHint: {ex.nan_hint}" if ex.nan_hint else ""
            bad = ~np.isfinite(value)
            raise AssertionError(f"{where}\n{out.name} contains NaN or inf in {int(bad.sum())} of "
                                 f"{bad.size} elements (the first at {np.argwhere(bad)[0].tolist()}): "
                                 f"expected finite numbers.{hint}")
    return value


def _as_scalar(ex: Exercise, out: Output, value, where: str):
    __tracebackhide__ = True
    if out.kind == "int":
        if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        is_float = isinstance(value, (float, np.floating))
        tip = " Use integer arithmetic (no `/`), or int(...)." if is_float else ""
        raise AssertionError(f"{where}\n{out.name} should be an int; got {_describe(value)}.{tip}")
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind == "f":
        value = value.reshape(())[()]
    if not isinstance(value, (numbers.Real, np.floating)) or isinstance(value, (bool, np.bool_)):
        raise AssertionError(f"{where}\n{out.name} should be a float (a single "
                             f"number, e.g. float(x)); got {_describe(value)}.")
    if not math.isfinite(value):
        hint = f"\nHint: {ex.nan_hint}" if ex.nan_hint else ""
        raise AssertionError(f"{where}\n{out.name} is {value}: expected a finite number.{hint}")
    return float(value)


def _same(got, expected) -> bool:
    if isinstance(expected, np.ndarray):
        if got.shape != expected.shape:
            return False
        if expected.dtype == bool:
            return bool(np.array_equal(got, expected))
        return bool(np.allclose(got, expected, rtol=RTOL, atol=ATOL))
    if isinstance(expected, int):
        return got == expected
    return math.isclose(got, expected, rel_tol=RTOL, abs_tol=ATOL)


def _known_mistake(case: Case, index: int, got):
    for i, wrong, hint in case.mistakes:
        if i == index and wrong is not None and _same(got, wrong):
            return hint
    return None


def _transposed(out: Output, got, expected) -> str | None:
    swapped = isinstance(got, np.ndarray) and got.ndim == 2 and got.shape == expected.shape[::-1]
    if swapped and _same(got.T, expected):
        return (f"you returned the transpose of {out.name}; it must have the shape of "
                f"{out.shape_of or 'the answer'}.")
    return None


def _array_verdict(out: Output, got: np.ndarray, expected: np.ndarray) -> str:
    if got.shape != expected.shape:
        where = f", the shape of {out.shape_of}" if out.shape_of else ""
        msg = f"{out.name} has shape {got.shape} but should have shape {expected.shape}{where}."
        if got.ndim == 2 and got.shape == expected.shape[::-1]:
            msg += " The two axes are swapped: a transpose too many or too few?"
        return msg
    if expected.dtype == bool:
        bad = got != expected
    else:
        bad = ~np.isclose(got, expected, rtol=RTOL, atol=ATOL)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    note = " (your array is float32; compute in float64)" if got.dtype == np.float32 else ""
    return (f"{out.name} is wrong at {int(bad.sum())} of {bad.size} elements; the first is {list(first)}: "
            f"expected {_fmt(expected[first])}, got {_fmt(got[first])}{note}.\n"
            f"  expected {_numbers(expected)}\n  got      {_numbers(got)}")


def _compare(ex: Exercise, case: Case, index: int, value, where: str) -> None:
    __tracebackhide__ = True
    out, expected = ex.outputs[index], case.expected[index]
    if out.kind in ("int", "scalar"):
        got = _as_scalar(ex, out, value, where)
        if _same(got, expected):
            return
        verdict = f"{out.name} is wrong: expected {_fmt(expected)}, got {_fmt(got)}."
    else:
        got = _as_array(ex, out, value, where)
        if _same(got, expected):
            return
        verdict = _array_verdict(out, got, expected)
    hint = _known_mistake(case, index, got) or _transposed(out, got, expected) or ex.hint
    raise AssertionError(f"{where}\n{verdict}\nHint: {hint}")


def grade(ex: Exercise, fn, cases: list, name: str = "") -> int:
    """Run every case; raise at the first wrong one. Returns the number of cases."""
    __tracebackhide__ = True
    _check_callable(ex, fn, name or "your function")
    fn_name = getattr(fn, "__name__", "your function")
    for k, case in enumerate(cases, 1):
        where = f"Exercise {ex.number} ({ex.title}), case {k} of {len(cases)}: {fn_name}({_label(case.args)})"
        values = _unpack(ex, _call(ex, fn, case, where), where, fn_name)
        for index, value in enumerate(values):
            _compare(ex, case, index, value, where)
    return len(cases)



def maybe(wrong):
    """A wrong answer that exists only for some shapes (e.g. a product missing a transpose), else None."""
    try:
        return wrong()
    except ValueError:
        return None


def passed(number: int, count: int) -> bool:
    print(f"✓ Exercise {number} passed ({count} cases)")
    return True


def case_rng(number: int) -> np.random.Generator:
    return np.random.default_rng(1000 + number)
