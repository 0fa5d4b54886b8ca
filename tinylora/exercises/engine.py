"""The grading engine: draw random cases, run a student's function, compare, and explain what is wrong.

An ``Exercise`` is one or more ``Part``s, one per function the student writes. A part draws
its cases from a seeded generator (``draw(rng, k)`` gives case k's arguments; the regimes that
matter come at fixed k), computes the expected outputs with tinylora's own ops (``reference``)
and lists the plausible ``Mistake``s, each a wrong implementation with its hint. ``run`` grades
every case and returns a ``Result``; a mistake's hint is chosen only when the student's outputs
equal that wrong implementation's on every case it can run, and no other mistake (with another
hint) does the same. ``check`` turns a failed result into an AssertionError whose text is staged:
the first failure says what is wrong where, later ones add the hint, and ``hint=True`` adds the
formula.

>>> import numpy as np
>>> ex = Exercise(0, "double", "double", (Part("double", (Output("y"),),
...     draw=lambda rng, k: {"x": rng.standard_normal(k + 2)}, reference=lambda x: 2 * x,
...     mistakes=(Mistake("identity", lambda x: x, "you returned x unchanged"),)),),
...     hint="each element doubles", formula="y = 2 x")
>>> run(ex, [lambda x: 2 * x], seed=0).passed
True
>>> r = run(ex, [lambda x: x], seed=0)
>>> r.passed, r.mistake
(False, 'identity')
"""
from __future__ import annotations

import copy
import math
import numbers
import random
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._validate import check_bool, check_int
from ..tensor import Tensor

__all__ = ["ExerciseNotDone", "Verdict", "Output", "Mistake", "Part", "Exercise", "Result", "run", "check",
           "draw_cases", "failures", "reset_failures"]

_FAILURES: dict[int, int] = {}   # exercise number -> failed checks so far in this process


class ExerciseNotDone(AssertionError):
    """The student's function still raises NotImplementedError."""


class Verdict(Exception):
    """Raised by a part's ``call`` when the student's result is malformed (a message for the student)."""


@dataclass(frozen=True)
class Output:
    """One value a function returns: its name, its kind and where its shape comes from.

    kind: "float" array, "bool" array, "int_array", "int" scalar, "scalar" (a float) or "list" (of str).
    """

    name: str
    kind: str = "float"
    shape_of: str = ""


@dataclass(frozen=True)
class Mistake:
    """A plausible wrong answer: a wrong implementation of the part's function, and the hint it earns."""

    name: str
    wrong: Callable
    hint: str


@dataclass
class Part:
    """One function of an exercise: its cases, its reference and its known mistakes."""

    function: str
    outputs: tuple
    draw: Callable                    # draw(rng, k) -> dict of arguments of case k
    reference: Callable               # reference(**args) -> the expected output(s), from tinylora's ops
    mistakes: tuple = ()
    cases: int = 6
    call: Callable | None = None      # call(fn, args) -> the outputs; default fn(*args.values())


@dataclass
class Exercise:
    """An exercise: number, name (the notebook's), title, parts, staged hints, points and minutes."""

    number: int
    name: str
    title: str
    parts: tuple
    hint: str                 # the second failure's hint when no known mistake matches (no formula)
    formula: str              # shown only on request: check_...(fn, hint=True)
    points: int = 1
    minutes: int = 15         # a student's working time on a lab machine
    error_hint: str = ""      # shown (from the second failure) when the student's function raises
    nan_hint: str = ""        # shown (from the second failure) when an output holds NaN or inf
    rtol: float = 1e-6
    atol: float = 1e-9
    checker: str = ""         # the check_... name, for messages

    @property
    def functions(self) -> list[str]:
        return [p.function for p in self.parts]


@dataclass
class Result:
    """What ``run`` found: passed or not, the seed, the verdict, and the hint of a matched mistake."""

    number: int
    passed: bool
    seed: int
    cases: int = 0
    verdict: str = ""           # what is wrong where (stage 1)
    hint: str = ""              # the mistake's hint, or the exercise's general hint (stage 2)
    mistake: str | None = None  # the name of the matched mistake, when exactly one matched
    not_done: bool = False

    def message(self, ex: Exercise, stage: int, formula: bool = False) -> str:
        call = f"{ex.checker or 'check'}({', '.join(ex.functions)}, seed={self.seed})"
        text = f"{self.verdict}\nReproduce this case with {call}."
        if stage >= 2 or formula:
            text += f"\nHint: {self.hint}"
        else:
            text += "\nRun the check again after a fix to get a hint; add hint=True to see the formula."
        if formula:
            text += f"\nFormula: {ex.formula}"
        return text


# ---- drawing cases -------------------------------------------------------------------------
def new_seed() -> int:
    return random.SystemRandom().randrange(1, 1_000_000)


def draw_cases(ex: Exercise, seed: int) -> list[list[dict]]:
    """The arguments of every case of every part for ``seed`` (the same seed gives the same cases)."""
    cases = []
    for index, part in enumerate(ex.parts):
        rng = np.random.default_rng([seed, index])
        cases.append([part.draw(rng, k) for k in range(part.cases)])
    return cases


# ---- describing values ----------------------------------------------------------------------
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
        if isinstance(value, (np.ndarray, Tensor)):
            parts.append(f"{name} {tuple(value.shape)}")
        elif isinstance(value, list) and len(value) > 4:
            parts.append(f"{name} = [{', '.join(map(repr, value[:3]))}, ...] ({len(value)} items)")
        elif isinstance(value, float):
            parts.append(f"{name}={value:.6g}")
        else:
            parts.append(f"{name}={value!r}")
    return ", ".join(parts)


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)


def _numbers(a, count: int = 4) -> str:
    flat = np.asarray(a).reshape(-1)
    return f"[{', '.join(_fmt(v) for v in flat[:count])}{', ...' if flat.size > count else ''}]"


# ---- coercing and comparing one output ------------------------------------------------------
def _coerce(out: Output, value):
    """The value as the kind ``out`` asks for, or raise Verdict saying what is wrong with its type."""
    kind = out.kind
    if kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Verdict(f"{out.name} should be a list of str; got {_describe(value)}.")
        return value
    if kind in ("int", "scalar"):
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        if kind == "int" and not (isinstance(value, (numbers.Integral, np.integer))
                                  and not isinstance(value, (bool, np.bool_))):
            tip = " Use integer arithmetic (`//`, no `/`), or int(...)." if isinstance(value, float) else ""
            raise Verdict(f"{out.name} should be an int; got {_describe(value)}.{tip}")
        if kind == "scalar" and (not isinstance(value, (numbers.Real, np.floating))
                                 or isinstance(value, (bool, np.bool_))):
            raise Verdict(f"{out.name} should be a float (one number, e.g. float(x)); "
                          f"got {_describe(value)}.")
        return int(value) if kind == "int" else float(value)
    if isinstance(value, Tensor):
        raise Verdict(f"{out.name} should be a NumPy array, but it is a tinylora Tensor; these exercises "
                      "work on plain arrays (a Tensor's array is `t.data`).")
    if isinstance(value, (numbers.Real, np.generic)) and kind == "float" and not isinstance(value, bool):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        tip = " (convert it with np.array(...))" if isinstance(value, (list, tuple)) else ""
        raise Verdict(f"{out.name} should be a NumPy array; got {_describe(value)}{tip}.")
    wanted = {"bool": "b", "int_array": "iu", "float": "fiu"}[kind]
    if value.dtype.kind not in wanted:
        name = {"bool": "bool", "int_array": "an integer type", "float": "float"}[kind]
        tip = " Build it with dtype=bool or convert with .astype(bool)." if kind == "bool" else ""
        raise Verdict(f"{out.name} should have dtype {name}; got dtype {value.dtype}.{tip}")
    return value


def _equal(a, b, ex: Exercise) -> bool:
    """a equals b within the exercise's tolerance (NaN equals NaN, for matching unstable mistakes)."""
    if isinstance(b, np.ndarray) or isinstance(a, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            return bool(np.allclose(a, b, rtol=ex.rtol, atol=ex.atol, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(b, float) and isinstance(a, (int, float)):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=ex.rtol, abs_tol=ex.atol)
    return type(a) is type(b) and a == b


def _value_verdict(ex: Exercise, out: Output, got, expected) -> str:
    if isinstance(expected, list):
        return f"{out.name} is wrong: expected {expected!r}, got {got!r}."
    if not isinstance(expected, np.ndarray):
        if isinstance(got, float) and not math.isfinite(got):
            return f"{out.name} is {got}: expected a finite number, {_fmt(expected)}."
        return f"{out.name} is wrong: expected {_fmt(expected)}, got {_fmt(got)}."
    if got.shape != expected.shape:
        where = f", the shape of {out.shape_of}" if out.shape_of else ""
        msg = f"{out.name} has shape {got.shape} but should have shape {expected.shape}{where}."
        if got.ndim == 2 and got.shape == expected.shape[::-1]:
            msg += " The two axes are swapped: a transpose too many or too few?"
        return msg
    if expected.dtype.kind == "f" and not np.all(np.isfinite(got)):
        bad = ~np.isfinite(got)
        return (f"{out.name} contains NaN or inf in {int(bad.sum())} of {bad.size} elements (the first at "
                f"{np.argwhere(bad)[0].tolist()}): expected finite numbers.")
    if expected.dtype.kind == "f":
        bad = ~np.isclose(got, expected, rtol=ex.rtol, atol=ex.atol)
    else:
        bad = got != expected
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    note = " (your array is float32; compute in float64)" if got.dtype == np.float32 else ""
    return (f"{out.name} is wrong at {int(bad.sum())} of {bad.size} elements; the first is {list(first)}: "
            f"expected {_fmt(expected[first])}, got {_fmt(got[first])}{note}.\n"
            f"  expected {_numbers(expected)}\n  got      {_numbers(got)}")


# ---- running one part -----------------------------------------------------------------------
def _as_tuple(part: Part, value) -> tuple:
    if len(part.outputs) == 1:
        return (value,)
    if not isinstance(value, (tuple, list)) or len(value) != len(part.outputs):
        names = ", ".join(o.name for o in part.outputs)
        raise Verdict(f"{part.function} should return a tuple of {len(part.outputs)} values ({names}); "
                      f"got {_describe(value)}.")
    return tuple(value)


def _invoke(part: Part, fn, args: dict):
    """The outputs of fn on a private copy of args (so a wrong answer cannot spoil the case)."""
    mine = copy.deepcopy(args)
    return _as_tuple(part, part.call(fn, mine) if part.call else fn(*mine.values()))


def _student(ex: Exercise, part: Part, fn, args: dict, where: str):
    """The student's outputs on one case; raises Verdict (wrong type, crash, changed input)."""
    __tracebackhide__ = True
    before, mine = copy.deepcopy(args), args
    try:
        raw = part.call(fn, mine) if part.call else fn(*mine.values())
    except NotImplementedError as err:
        what = str(err).removeprefix(f"Exercise {ex.number}:").strip() or "the stub still raises"
        raise ExerciseNotDone(f"Exercise {ex.number} is not implemented yet: {what}. Replace the `raise "
                              f"NotImplementedError(...)` line of {part.function} with your code, run that "
                              "cell, then run the check again.") from None
    except Verdict:
        raise
    except Exception as err:  # the student's code crashed: that is the verdict
        raise Verdict(f"{part.function} raised {type(err).__name__}: {err}", "error") from err
    for name, value in before.items():
        if isinstance(value, np.ndarray) and not np.array_equal(mine[name], value, equal_nan=True):
            raise Verdict(f"{part.function} changed its input {name} in place. Leave the inputs alone and "
                          "build a new array (write `W = W0 + ...`, not `W0 += ...`).")
    return tuple(_coerce(o, v) for o, v in zip(part.outputs, _as_tuple(part, raw)))


def _first_wrong(ex: Exercise, part: Part, got: tuple, expected: tuple):
    for i, (out, g, e) in enumerate(zip(part.outputs, got, expected)):
        finite = not (isinstance(g, np.ndarray) and g.dtype.kind == "f" and not np.all(np.isfinite(g)))
        if not (finite and _equal(g, e, ex)):
            return i, _value_verdict(ex, out, g, e)
    return None


def _matched_mistake(ex: Exercise, part: Part, runs: list):
    """The mistakes whose outputs equal the student's on every case they can run (and differ somewhere)."""
    hits = []
    for mistake in part.mistakes:
        seen_wrong, agrees = False, True
        for args, expected, got in runs:
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")   # the unstable mistakes overflow on purpose
                    raw = _invoke(part, mistake.wrong, args)
                theirs = tuple(_coerce(o, v) for o, v in zip(part.outputs, raw))
            except Exception:
                continue
            if not all(_equal(g, t, ex) for g, t in zip(got, theirs)):
                agrees = False
                break
            seen_wrong |= not all(_equal(t, e, ex) for t, e in zip(theirs, expected))
        if agrees and seen_wrong:
            hits.append(mistake)
    return hits[0] if hits and len({m.hint for m in hits}) == 1 else None


def _run_part(ex: Exercise, part: Part, fn, cases: list[dict], label: str):
    """None when every case passes, else (verdict, hint, mistake name)."""
    name = getattr(fn, "__name__", part.function)
    runs, failure = [], None
    for k, args in enumerate(cases, 1):
        where = f"{label}, case {k} of {len(cases)}: {name}({_label(args)})"
        expected = _as_tuple(part, part.reference(**copy.deepcopy(args)))
        try:
            got = _student(ex, part, fn, args, where)
        except Verdict as err:
            if failure is None:
                hint = ex.error_hint if err.args[1:] == ("error",) and ex.error_hint else ex.hint
                return f"{where}\n{err.args[0]}", hint, None
            break
        runs.append((args, expected, got))
        wrong = _first_wrong(ex, part, got, expected)
        if wrong and failure is None:
            failure = (where, wrong, got)
    if failure is None:
        return None
    where, (index, verdict), got = failure
    mistake = _matched_mistake(ex, part, runs)
    if mistake:
        return f"{where}\n{verdict}", mistake.hint, mistake.name
    value = got[index]
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.all(np.isfinite(value)) \
            and ex.nan_hint:
        return f"{where}\n{verdict}", ex.nan_hint, None
    return f"{where}\n{verdict}", ex.hint, None


def run(ex: Exercise, fns, seed: int | None = None) -> Result:
    """Grade the functions ``fns`` (one per part) on the cases of ``seed`` (a fresh seed when None)."""
    __tracebackhide__ = True
    seed = new_seed() if seed is None else check_int("seed", seed, low=0, where=f"exercise {ex.number}")
    fns = list(fns)
    for part, fn in zip(ex.parts, fns):
        if not callable(fn):
            return Result(ex.number, False, seed, verdict=(
                f"Exercise {ex.number} ({ex.title}): the checker needs your function itself, as in "
                f"`check(my_function)` without parentheses after it; got {_describe(fn)} for "
                f"{part.function}."),
                hint=ex.hint)
    count = 0
    for part, fn, cases in zip(ex.parts, fns, draw_cases(ex, seed)):
        label = f"Exercise {ex.number} ({ex.title}), seed {seed}"
        try:
            failed = _run_part(ex, part, fn, cases, label)
        except ExerciseNotDone as err:
            return Result(ex.number, False, seed, verdict=str(err), hint=ex.hint, not_done=True)
        if failed:
            verdict, hint, mistake = failed
            return Result(ex.number, False, seed, count, verdict, hint, mistake)
        count += len(cases)
    return Result(ex.number, True, seed, count)


def failures(number: int) -> int:
    """How many checks of exercise ``number`` have failed in this process (the hint stage)."""
    return _FAILURES.get(number, 0)


def reset_failures() -> None:
    """Forget earlier failures, so the next failure is a first one again."""
    _FAILURES.clear()


def check(ex: Exercise, fns, seed: int | None = None, hint: bool = False) -> bool:
    """Print ✓ and return True, or raise AssertionError with the staged message."""
    __tracebackhide__ = True
    check_bool("hint", hint, where=ex.checker or "check")
    result = run(ex, fns, seed)
    if result.passed:
        print(f"✓ Exercise {ex.number} passed ({result.cases} cases, seed {result.seed})")
        return True
    if result.not_done:
        raise ExerciseNotDone(result.verdict)
    _FAILURES[ex.number] = failures(ex.number) + 1
    raise AssertionError(result.message(ex, failures(ex.number), formula=hint))
