"""Classroom exercises: the student writes one function on NumPy arrays, a checker grades it.

Each exercise has a notebook in ``notebooks/exercises/`` that states the math, holds a stub
that raises ``NotImplementedError("Exercise N: ...")``, and ends with ``check_<name>(fn)``.
A checker runs the student's function on several float64 cases with awkward shapes and
computes the expected answer with tinylora's own ops (the engine's backward, ``functional``,
``LoRALinear``, ``count_parameters``, ``analysis``). It prints ``✓ Exercise N passed (k cases)``
and returns True, or raises AssertionError naming the case, the first wrong element
(expected vs got) and a hint. The hint is targeted: the checker also computes the usual wrong
answers (a missing transpose, a forgotten 1/N or alpha/r, a mask off by one, ...) and says
which one the student's output matches. A stub that still raises NotImplementedError gets
``ExerciseNotDone``, a friendly AssertionError.

>>> import numpy as np
>>> check_causal_mask(lambda T: np.tril(np.ones((T, T), dtype=bool)))
✓ Exercise 5 passed (4 cases)
True
"""
from __future__ import annotations

import copy
import inspect
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from . import functional as F
from .experiments.analysis import subspace_similarity as _reference_subspace_similarity
from .models.gpt import GPT, GPTConfig
from .lora import LoraConfig, LoRALinear, apply_lora, count_parameters, lora_layers
from .nn import Linear
from .tensor import Tensor

__all__ = ["ExerciseNotDone", "EXERCISES", "check_all", "check_unbroadcast", "check_matmul_backward",
           "check_cross_entropy_backward", "check_layer_norm_backward", "check_causal_mask", "check_lora_forward",
           "check_merge_unmerge", "check_lora_trainable_params", "check_subspace_similarity",
           "check_masked_attention_weights"]

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
        raise AssertionError(f"Exercise {ex.number} ({ex.title}): the checker needs your function itself, as in "
                             f"`check(my_function)` without parentheses after my_function; got {_describe(fn)} "
                             f"for {name}.")


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
                              f"Replace the `raise NotImplementedError(...)` line of {name} with your code, run "
                              "that cell, then run the check again.") from None
    except Exception as err:
        hint = f"\nHint: {ex.error_hint}" if ex.error_hint else ""
        raise AssertionError(f"{where}\n{name} raised {type(err).__name__}: {err}{hint}") from err
    for arg, value in case.args.items():
        if isinstance(value, np.ndarray) and not np.array_equal(value, before[arg]):
            raise AssertionError(f"{where}\n{name} changed its input {arg} in place. Leave the inputs alone and "
                                 f"build a new array (write `W = W0 + ...`, not `W0 += ...`).")
    return got


def _unpack(ex: Exercise, got, where: str, name: str) -> tuple:
    __tracebackhide__ = True
    if len(ex.outputs) == 1:
        return (got,)
    names = ", ".join(o.name for o in ex.outputs)
    if not isinstance(got, (tuple, list)) or len(got) != len(ex.outputs):
        raise AssertionError(f"{where}\n{name} should return a tuple of {len(ex.outputs)} arrays ({names}); "
                             f"got {_describe(got)}.")
    return tuple(got)


# ---- validating one output ----------------------------------------------------------------------
def _as_array(ex: Exercise, out: Output, value, where: str) -> np.ndarray:
    __tracebackhide__ = True
    what = "a bool" if out.kind == "bool" else "a float"
    if isinstance(value, Tensor):
        raise AssertionError(f"{where}\n{out.name} should be {what} NumPy array, but it is a tinylora Tensor; "
                             "these exercises work on plain arrays (a Tensor's array is `t.data`).")
    if isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, (bool, np.bool_)) \
            and out.kind == "float":
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        tip = " (convert it with np.array(...))" if isinstance(value, (list, tuple)) else ""
        raise AssertionError(f"{where}\n{out.name} should be {what} NumPy array; got {_describe(value)}{tip}.")
    if out.kind == "bool" and value.dtype != bool:
        raise AssertionError(f"{where}\n{out.name} should be an array of dtype bool (True = may attend); got dtype "
                             f"{value.dtype}. Build it as bool, e.g. np.ones((T, T), dtype=bool), or convert "
                             "with .astype(bool).")
    if out.kind == "float":
        if value.dtype.kind not in "fiu":
            raise AssertionError(f"{where}\n{out.name} should be a float array; got dtype {value.dtype}.")
        if not np.all(np.isfinite(value)):
            hint = f"\nHint: {ex.nan_hint}" if ex.nan_hint else ""
            bad = ~np.isfinite(value)
            raise AssertionError(f"{where}\n{out.name} contains NaN or inf in {int(bad.sum())} of {bad.size} elements "
                                 f"(the first at {np.argwhere(bad)[0].tolist()}): expected finite numbers.{hint}")
    return value


def _as_scalar(ex: Exercise, out: Output, value, where: str):
    __tracebackhide__ = True
    if out.kind == "int":
        if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        tip = " Use integer arithmetic (no `/`), or int(...)." if isinstance(value, (float, np.floating)) else ""
        raise AssertionError(f"{where}\n{out.name} should be an int; got {_describe(value)}.{tip}")
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind == "f":
        value = value.reshape(())[()]
    if not isinstance(value, (numbers.Real, np.floating)) or isinstance(value, (bool, np.bool_)):
        raise AssertionError(f"{where}\n{out.name} should be a float (a single number, e.g. float(x)); "
                             f"got {_describe(value)}.")
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
    if isinstance(got, np.ndarray) and got.ndim == 2 and got.shape == expected.shape[::-1] and _same(got.T, expected):
        return f"you returned the transpose of {out.name}; it must have the shape of {out.shape_of or 'the answer'}."
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


def _grade(ex: Exercise, fn, cases: list, name: str = "") -> int:
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


def _maybe(wrong):
    """A wrong answer that only exists for some shapes (e.g. a product missing a transpose); None otherwise."""
    try:
        return wrong()
    except ValueError:
        return None


def _passed(number: int, count: int) -> bool:
    print(f"✓ Exercise {number} passed ({count} cases)")
    return True


def _rng(number: int) -> np.random.Generator:
    return np.random.default_rng(1000 + number)


# ---- 1. unbroadcast ----------------------------------------------------------------------------
_UNBROADCAST = Exercise(
    1, "unbroadcast", (Output("result", shape_of="`shape`"),),
    hint="sum grad over the leading axes that `shape` lacks, then over every axis where `shape` has a 1 "
         "(with keepdims=True), so the result has exactly `shape`.",
    error_hint="grad may have more axes than `shape` (broadcasting adds axes on the left); sum those first.")


def _unbroadcast_expected(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """x + zeros(grad.shape) broadcasts x up to grad's shape; the engine's backward sums it back."""
    x = Tensor(np.zeros(shape), requires_grad=True)
    (x + Tensor(np.zeros(grad.shape))).backward(grad)
    return x.grad


def _unbroadcast_case(grad: np.ndarray, shape: tuple) -> Case:
    lead = grad.ndim - len(shape)
    ones = tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    axes = tuple(range(lead)) + ones
    return Case({"grad": grad, "shape": shape}, (_unbroadcast_expected(grad, shape),), [
        (0, grad.sum(axis=tuple(range(lead))) if lead and ones else None,
         "you summed the extra leading axes, but not the axes where `shape` has a 1: sum those too, with keepdims=True."),
        (0, grad.sum(axis=axes) if ones else None,
         "right numbers, but the size-1 axes vanished: sum them with keepdims=True (or reshape to `shape` at the end)."),
        (0, grad.mean(axis=axes, keepdims=True).reshape(shape) if axes else None,
         "every broadcast copy of an input element passes its own gradient back, and these add up: use sum, not mean."),
        (0, grad, "you returned grad as is: a broadcast input gets the *sum* of grad over the axes it was stretched "
                  "along, here the axes where `shape` has a 1 (keep them, keepdims=True) and any extra leading axes."),
    ])


def check_unbroadcast(unbroadcast) -> bool:
    """Exercise 1: ``unbroadcast(grad, shape)`` sums a gradient back to an input's shape.

    >>> check_unbroadcast(lambda grad, shape: grad)    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: Exercise 1 (unbroadcast), case 1 of 7: <lambda>(grad (4, 3), shape=(3,))
    result has shape (4, 3) but should have shape (3,), the shape of `shape`.
    Hint: you returned grad as is: ...
    """
    __tracebackhide__ = True
    rng = _rng(1)
    pairs = [((4, 3), (3,)), ((4, 3), (4, 1)), ((2, 5, 4, 3), (5, 1, 3)), ((3, 4, 5, 2), (3, 1, 5, 1)),
             ((4, 5), (1, 1)), ((6,), ()), ((2, 3), (2, 3))]
    cases = [_unbroadcast_case(rng.standard_normal(g), s) for g, s in pairs]
    return _passed(1, _grade(_UNBROADCAST, unbroadcast, cases))


# ---- 2. matmul backward ------------------------------------------------------------------------
_MATMUL = Exercise(
    2, "matmul backward", (Output("grad_a", shape_of="a"), Output("grad_b", shape_of="b")),
    hint="for out = a @ b: grad_a = grad_out @ bᵀ and grad_b = aᵀ @ grad_out. Each gradient has its input's shape.",
    error_hint="grad_out is (m, n), a is (m, k), b is (k, n). grad_a must be (m, k): which of b or bᵀ turns "
               "(m, n) into (m, k)? Likewise grad_b must be (k, n).")


def _matmul_case(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> Case:
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    (ta @ tb).backward(g)
    ga, gb = ta.grad, tb.grad
    return Case({"a": a, "b": b, "grad_out": g}, (ga, gb), [
        (0, gb, "you returned (grad_b, grad_a); return them in the order (grad_a, grad_b)."),
        (0, _maybe(lambda: g @ b), "missing transpose: grad_a = grad_out @ bᵀ, not grad_out @ b."),
        (1, _maybe(lambda: a @ g), "missing transpose: grad_b = aᵀ @ grad_out, not a @ grad_out."),
    ])


def check_matmul_backward(matmul_backward) -> bool:
    """Exercise 2: ``matmul_backward(a, b, grad_out) -> (grad_a, grad_b)`` for out = a @ b."""
    __tracebackhide__ = True
    rng = _rng(2)
    shapes = [(3, 3, 3), (4, 3, 2), (1, 5, 1), (2, 6, 4), (5, 1, 3)]   # (m, k, n)
    cases = [_matmul_case(rng.standard_normal((m, k)), rng.standard_normal((k, n)), rng.standard_normal((m, n)))
             for m, k, n in shapes]
    return _passed(2, _grade(_MATMUL, matmul_backward, cases))


# ---- 3. softmax + cross-entropy backward -------------------------------------------------------
_CROSS_ENTROPY = Exercise(
    3, "cross-entropy backward", (Output("dlogits", shape_of="logits"),),
    hint="for the mean loss over N rows, dlogits = (softmax(logits) − one_hot(targets)) / N, softmax along each row.",
    error_hint="logits is (N, C) and targets is (N,) of ints; one_hot(targets) is (N, C), e.g. np.eye(C)[targets].",
    nan_hint="exp of a large logit overflows to inf, and inf/inf is NaN: subtract each row's max before exp "
             "(softmax is unchanged by a shift).")


def _softmax_rows(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _cross_entropy_case(logits: np.ndarray, targets: np.ndarray) -> Case:
    t = Tensor(logits, requires_grad=True)
    F.cross_entropy(t, targets).backward()
    n, c = logits.shape
    p, onehot = _softmax_rows(logits), np.eye(c)[targets]
    return Case({"logits": logits, "targets": targets}, (t.grad,), [
        (0, p - onehot, "forgot the 1/N of the mean: the loss averages over the N rows, so divide by N."),
        (0, (onehot - p) / n, "wrong sign: the gradient is softmax − one_hot (push up the target's logit "
                              "by pushing the loss *down*)."),
        (0, p / n, "forgot to subtract the one-hot of the targets: (softmax − one_hot) / N."),
        (0, (p - onehot) / (n * c), "divided by N·C: the mean is over the N rows, not over every logit."),
        (0, (_softmax_rows(logits, axis=0) - onehot) / n, "softmax along the wrong axis: normalise each row (axis=-1)."),
    ])


def check_cross_entropy_backward(cross_entropy_backward) -> bool:
    """Exercise 3: ``cross_entropy_backward(logits, targets) -> dlogits`` for the mean cross-entropy."""
    __tracebackhide__ = True
    rng = _rng(3)
    cases = []
    for (n, c), scale, shift in [((4, 5), 1, 0), ((1, 3), 1, 0), ((6, 2), 2, 0), ((8, 10), 1, 0), ((3, 7), 50, 1000)]:
        logits = rng.standard_normal((n, c)) * scale + shift
        cases.append(_cross_entropy_case(logits, rng.integers(0, c, size=n)))
    return _passed(3, _grade(_CROSS_ENTROPY, cross_entropy_backward, cases))


# ---- 4. layer-norm backward --------------------------------------------------------------------
_LAYER_NORM = Exercise(
    4, "layer-norm backward", (Output("dx", shape_of="x"), Output("dweight", shape_of="weight"),
                               Output("dbias", shape_of="weight")),
    hint="with x̂ = (x − μ)/√(σ² + ε) and ĝ = grad_out·weight: dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / √(σ² + ε) "
         "(means over the last axis); dweight = Σ grad_out·x̂ and dbias = Σ grad_out over every axis but the last.",
    error_hint="x is (..., D) and weight is (D,); take means over the last axis with keepdims=True.")


def _layer_norm_case(x: np.ndarray, weight: np.ndarray, g: np.ndarray, eps: float) -> Case:
    tx, tw, tb = (Tensor(a, requires_grad=True) for a in (x, weight, np.zeros_like(weight)))
    F.layer_norm(tx, tw, tb, eps=eps).backward(g)
    centred = x - x.mean(axis=-1, keepdims=True)
    var = (centred ** 2).mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)
    xhat, gh, lead = centred * rstd, g * weight, tuple(range(x.ndim - 1))

    def dx(gh, rstd=rstd, xhat=xhat):
        return rstd * (gh - gh.mean(axis=-1, keepdims=True) - xhat * (gh * xhat).mean(axis=-1, keepdims=True))
    rstd_no_eps = 1 / np.sqrt(var)
    mistakes = [
        (0, gh * rstd, "μ and σ depend on x too: you treated them as constants. Add the two terms that flow "
                       "through the mean and the variance."),
        (0, rstd * (gh - gh.mean(axis=-1, keepdims=True)),
         "missing the variance term: σ depends on x, which adds −x̂·mean(ĝ·x̂)."),
        (0, rstd * (gh - xhat * (gh * xhat).mean(axis=-1, keepdims=True)),
         "missing the mean term: μ depends on x, which adds −mean(ĝ)."),
        (0, dx(g), "forgot the weight: the gradient reaching x̂ is ĝ = grad_out·weight."),
        (0, dx(gh, rstd_no_eps, centred * rstd_no_eps), "ε belongs inside the square root: 1/√(σ² + ε)."),
        (1, (g * x).sum(axis=lead), "dweight multiplies grad_out by x̂ (the normalised x), not by x."),
        (1, g * xhat, "sum dweight over every axis but the last: the same weight is used in every row."),
        (2, g, "sum dbias over every axis but the last: the same bias is used in every row."),
    ]
    if x.ndim > 2:
        mistakes += [(1, (g * xhat).sum(axis=0), "sum over *every* leading axis, axis=tuple(range(x.ndim - 1)), "
                                                 "not only axis 0."),
                     (2, g.sum(axis=0), "sum over *every* leading axis, axis=tuple(range(x.ndim - 1)), not only axis 0.")]
    return Case({"x": x, "weight": weight, "grad_out": g, "eps": eps}, (tx.grad, tw.grad, tb.grad), mistakes)


def check_layer_norm_backward(layer_norm_backward) -> bool:
    """Exercise 4: ``layer_norm_backward(x, weight, grad_out, eps) -> (dx, dweight, dbias)``."""
    __tracebackhide__ = True
    rng = _rng(4)
    cases = []
    for shape, eps, spread in [((4, 5), 1e-5, 1.0), ((2, 3, 6), 1e-5, 3.0), ((1, 8), 1e-5, 1.0),
                               ((3, 2, 2, 4), 0.5, 0.5)]:
        x = rng.standard_normal(shape) * spread + rng.standard_normal()
        w = rng.uniform(0.5, 1.5, size=shape[-1]) * rng.choice([-1, 1], size=shape[-1])
        cases.append(_layer_norm_case(x, w, rng.standard_normal(shape), eps))
    return _passed(4, _grade(_LAYER_NORM, layer_norm_backward, cases))


# ---- 5. the causal mask ------------------------------------------------------------------------
_CAUSAL_MASK = Exercise(
    5, "causal mask", (Output("mask", kind="bool"),),
    hint="mask[i, j] is True when query i may attend to key j, that is when j ≤ i (the past and itself): "
         "the lower triangle including the diagonal.")


def _allowed_by_attention(T: int) -> np.ndarray:
    """Where tinylora's causal attention puts weight: with equal scores and v = I, probs > 0 exactly there."""
    zeros = Tensor(np.zeros((T, 1)))
    return F.scaled_dot_product_attention(zeros, zeros, Tensor(np.eye(T)), causal=True).data > 0


def _causal_mask_case(T: int) -> Case:
    ones = np.ones((T, T), dtype=bool)
    return Case({"T": T}, (_allowed_by_attention(T),), [
        (0, np.tril(ones, k=-1), "off by one: the diagonal must be True, since a token may attend to itself."),
        (0, np.triu(ones, k=1), "inverted: True means *may attend*, so row i is True for j ≤ i, not for the future."),
        (0, np.triu(ones), "transposed: row i is the query and column j the key; query i may see keys j ≤ i."),
        (0, ones, "nothing is masked: the future keys j > i must be False."),
    ])


def check_causal_mask(causal_mask) -> bool:
    """Exercise 5: ``causal_mask(T)`` -> (T, T) bool, True where query i may attend to key j."""
    __tracebackhide__ = True
    return _passed(5, _grade(_CAUSAL_MASK, causal_mask, [_causal_mask_case(T) for T in (1, 2, 5, 8)]))


# ---- 6. LoRA forward ---------------------------------------------------------------------------
_LORA_FORWARD = Exercise(
    6, "LoRA forward", (Output("h"),),
    hint="h = x W0ᵀ + (alpha/r) · x Aᵀ Bᵀ, with W0 (out, in), A (r, in), B (out, r) and x (..., in).",
    error_hint="shapes: x (..., in), W0 (out, in), A (r, in), B (out, r). x @ W0.T is (..., out); "
               "x @ A.T is (..., r), and that @ B.T is (..., out).")


def _lora_layer(W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float, r: int) -> LoRALinear:
    """tinylora's own LoRALinear holding exactly these weights."""
    out_f, in_f = W0.shape
    layer = LoRALinear(Linear(in_f, out_f, bias=False, dtype=np.float64))
    layer.base_layer.weight.data = W0.copy()
    layer.add_adapter("default", LoraConfig(r=r, lora_alpha=alpha), np.random.default_rng(0))
    adapter = layer.adapters["default"]
    adapter.lora_A.data, adapter.lora_B.data = A.copy(), B.copy()
    layer.active_adapter = "default"
    return layer


def _lora_forward_case(x, W0, A, B, alpha, r) -> Case:
    base, low = x @ W0.T, x @ A.T @ B.T
    return Case({"x": x, "W0": W0, "A": A, "B": B, "alpha": alpha, "r": r},
                (_lora_layer(W0, A, B, alpha, r)(Tensor(x)).data,), [
        (0, base + low, "forgot the scaling: the adapter's output is multiplied by alpha/r."),
        (0, base + (r / alpha) * low, "the scaling is alpha/r, not r/alpha."),
        (0, base + (alpha / math.sqrt(r)) * low, "alpha/√r is rsLoRA's scaling; plain LoRA uses alpha/r."),
        (0, (alpha / r) * low, "forgot the frozen path: h starts with x W0ᵀ."),
        (0, base, "the adapter path is missing: add (alpha/r) · x Aᵀ Bᵀ."),
        (0, _maybe(lambda: x @ W0), "missing transpose: W0 is (out, in), so the frozen path is x @ W0.T."),
        (0, _maybe(lambda: x @ W0 + (alpha / r) * low),
         "missing transpose: W0 is (out, in), so the frozen path is x @ W0.T."),
        (0, _maybe(lambda: base + (alpha / r) * x @ (B @ A)),
         "ΔW = B A is (out, in) like W0, so its path is x @ (B @ A).T = x @ A.T @ B.T."),
    ])


def check_lora_forward(lora_forward) -> bool:
    """Exercise 6: ``lora_forward(x, W0, A, B, alpha, r) -> h = x W0ᵀ + (alpha/r) x Aᵀ Bᵀ``."""
    __tracebackhide__ = True
    rng = _rng(6)
    cases = []
    for lead, out_f, in_f, r, alpha in [((5,), 4, 6, 2, 8), ((2, 3), 6, 6, 3, 6.0), ((1,), 7, 4, 1, 4),
                                        ((4,), 3, 5, 4, 16)]:
        x = rng.standard_normal(lead + (in_f,))
        W0, A, B = (rng.standard_normal(s) for s in ((out_f, in_f), (r, in_f), (out_f, r)))
        cases.append(_lora_forward_case(x, W0, A, B, alpha, r))
    return _passed(6, _grade(_LORA_FORWARD, lora_forward, cases))


# ---- 7. merge and unmerge ----------------------------------------------------------------------
_MERGE = Exercise(
    7, "merge", (Output("W", shape_of="W0"),),
    hint="merge returns W = W0 + (alpha/r) · B A, of shape (out, in) like W0.",
    error_hint="W0 is (out, in), A is (r, in), B is (out, r): B @ A is (out, in).")
_UNMERGE = Exercise(
    7, "unmerge", (Output("W0", shape_of="W"),),
    hint="unmerge undoes merge: W0 = W − (alpha/r) · B A.",
    error_hint=_MERGE.error_hint)


def _merge_cases(W0, A, B, alpha, r) -> tuple[Case, Case]:
    layer = _lora_layer(W0, A, B, alpha, r)
    layer.merge()
    W = layer.base_layer.weight.data.copy()
    layer.unmerge()
    s, BA = alpha / r, B @ A
    merge = Case({"W0": W0, "A": A, "B": B, "alpha": alpha, "r": r}, (W,), [
        (0, W0 + BA, "forgot the scaling: W = W0 + (alpha/r) · B A."),
        (0, W0 + BA * (r / alpha), "the scaling is alpha/r, not r/alpha."),
        (0, s * BA, "forgot W0: merging adds the update to the frozen weight."),
        (0, W0 - s * BA, "merge adds the update; unmerge subtracts it."),
        (0, _maybe(lambda: W0 + s * BA.T), "ΔW = B @ A (out, in), not Aᵀ @ Bᵀ (its transpose)."),
    ])
    unmerge = Case({"W": W, "A": A, "B": B, "alpha": alpha, "r": r}, (layer.base_layer.weight.data.copy(),), [
        (0, W + s * BA, "unmerge subtracts the update that merge added: W0 = W − (alpha/r) · B A."),
        (0, W - BA, "forgot the scaling: W0 = W − (alpha/r) · B A."),
        (0, W - BA * (r / alpha), "the scaling is alpha/r, not r/alpha."),
    ])
    return merge, unmerge


def check_merge_unmerge(merge, unmerge) -> bool:
    """Exercise 7: ``merge(W0, A, B, alpha, r)`` and ``unmerge(W, A, B, alpha, r)``; unmerge(merge(W0)) == W0."""
    __tracebackhide__ = True
    rng = _rng(7)
    pairs = []
    for out_f, in_f, r, alpha in [(4, 6, 2, 4), (5, 5, 3, 1.5), (8, 3, 1, 16), (6, 6, 6, 12)]:
        W0, A, B = (rng.standard_normal(s) for s in ((out_f, in_f), (r, in_f), (out_f, r)))
        pairs.append(_merge_cases(W0, A, B, alpha, r))
    count = _grade(_MERGE, merge, [m for m, _ in pairs], "merge")
    count += _grade(_UNMERGE, unmerge, [u for _, u in pairs], "unmerge")
    return _passed(7, count)


# ---- 8. counting trainable parameters ----------------------------------------------------------
_TRAINABLE = Exercise(
    8, "trainable parameters", (Output("count", kind="int"),),
    hint="each adapted layer of shape (d_out, d_in) trains A (r, d_in) and B (d_out, r): r·(d_in + d_out) "
         "parameters; add this up over all layers.",
    error_hint="layer_shapes is a list of (d_out, d_in) pairs, one per adapted layer; r is an int.")


def _trainable_case(preset: str, r: int, targets) -> Case:
    model = apply_lora(GPT(GPTConfig.preset(preset), seed=0), LoraConfig(r=r, target_modules=targets))
    shapes = [tuple(int(n) for n in layer.base_layer.weight.shape) for _, layer in lora_layers(model)]
    one = r * sum(shapes[0])
    return Case({"layer_shapes": shapes, "r": r}, (count_parameters(model)[0],), [
        (0, sum(r * o * i for o, i in shapes), "A and B are two thin matrices, r·d_in + d_out·r, not r·d_in·d_out."),
        (0, sum(o * i for o, i in shapes), "d_out·d_in is what full fine-tuning trains; LoRA trains r·(d_in + d_out)."),
        (0, one, "add the count up over every layer in layer_shapes, not just the first."),
        (0, sum(r * i for o, i in shapes), "you counted A (r·d_in) only; B adds d_out·r."),
        (0, sum(r * o for o, i in shapes), "you counted B (d_out·r) only; A adds r·d_in."),
        (0, 2 * sum(r * (o + i) for o, i in shapes), "each layer has one A and one B: r·(d_in + d_out), counted once."),
    ])


def check_lora_trainable_params(lora_trainable_params) -> bool:
    """Exercise 8: ``lora_trainable_params(layer_shapes, r)`` equals ``count_parameters`` of a GPT with LoRA."""
    __tracebackhide__ = True
    specs = [("nano", 4, ("q_proj", "v_proj")), ("nano", 1, "all-linear"), ("micro", 8, ("q_proj", "k_proj", "v_proj", "o_proj")),
             ("micro", 2, ("fc_in", "fc_out"))]
    cases = [_trainable_case(*spec) for spec in specs]
    return _passed(8, _grade(_TRAINABLE, lora_trainable_params, cases))


# ---- 9. subspace similarity --------------------------------------------------------------------
_SUBSPACE = Exercise(
    9, "subspace similarity", (Output("phi", kind="scalar"),),
    hint="φ = ‖U_iᵀ V_j‖_F² / min(i, j), with U_i the top-i right-singular vectors of A1 (the first i rows of "
         "Vᵀ from np.linalg.svd(A1)) and V_j the top-j of A2.",
    error_hint="np.linalg.svd(A) returns (U, S, Vt); the right-singular vectors of A (r, in) are the rows of "
               "Vt, each of length in. Use full_matrices=False.",
    nan_hint="φ is finite for any A1, A2; check for a division by zero.")


def _subspace_case(A1, A2, i, j) -> Case:
    v1 = np.linalg.svd(A1, full_matrices=False)[2]
    v2 = np.linalg.svd(A2, full_matrices=False)[2]
    squared = float(np.sum((v1[:i] @ v2[:j].T) ** 2))
    raw = float(np.sum((A1[:i] @ A2[:j].T) ** 2)) / min(i, j)
    return Case({"A1": A1, "A2": A2, "i": i, "j": j}, (_reference_subspace_similarity(A1, A2, i, j),), [
        (0, squared, "divide by min(i, j): that makes φ a number in [0, 1]."),
        (0, squared / max(i, j), "divide by min(i, j), not max(i, j)."),
        (0, math.sqrt(squared) / min(i, j), "square the Frobenius norm: ‖U_iᵀ V_j‖_F²."),
        (0, raw, "use the right-singular vectors (rows of Vt from np.linalg.svd), not the rows of A1 and A2 themselves."),
    ])


def check_subspace_similarity(subspace_similarity) -> bool:
    """Exercise 9: ``subspace_similarity(A1, A2, i, j)`` = ‖U_iᵀ V_j‖_F² / min(i, j)."""
    __tracebackhide__ = True
    rng = _rng(9)
    eye = np.eye(4)
    big1, big2 = rng.standard_normal((8, 16)), rng.standard_normal((4, 16))
    mixed = rng.standard_normal((4, 4)) @ big2            # the same row space as big2
    cases = [_subspace_case(eye[:2], eye[1:3], 2, 2), _subspace_case(big1, big2, 3, 2),
             _subspace_case(big1, big2, 1, 4), _subspace_case(big1, big2, 8, 4), _subspace_case(mixed, big2, 4, 4),
             _subspace_case(big1 * np.arange(1, 9)[:, None], big1, 2, 5)]
    return _passed(9, _grade(_SUBSPACE, subspace_similarity, cases))


# ---- 10. masked attention weights --------------------------------------------------------------
_MASKED_ATTENTION = Exercise(
    10, "masked attention weights", (Output("weights", shape_of="scores"),),
    hint="set scores[..., i, j] to −inf where j > i, then take the softmax along the last axis (over keys).",
    nan_hint="NaN comes from a row whose every score is −inf (exp gives 0/0: is the diagonal allowed?) or from "
             "exp overflowing (subtract each row's max before exp).")


def _attention_expected(scores: np.ndarray) -> np.ndarray:
    """tinylora's causal attention with q = scores·√T, k = v = I gives exactly softmax(masked scores)."""
    T = scores.shape[-1]
    q, eye = Tensor(scores * math.sqrt(T)), Tensor(np.eye(T))
    return F.scaled_dot_product_attention(q, eye, eye, causal=True).data


def _masked_attention_case(scores: np.ndarray) -> Case:
    T = scores.shape[-1]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    p = _softmax_rows(scores)
    zeroed = np.where(future, 0.0, p)
    return Case({"scores": scores}, (_attention_expected(scores),), [
        (0, zeroed, "mask *before* the softmax: zeroing weights afterwards leaves rows that no longer sum to 1."),
        (0, _softmax_rows(np.where(future, 0.0, scores)), "a masked score must be −inf (or very negative), not 0: "
                                                          "exp(0) = 1 still gives the future some weight."),
        (0, p, "apply the causal mask: query i must give zero weight to keys j > i."),
        (0, _softmax_rows(np.where(future.T, -np.inf, scores)) if T > 1 else None,
         "the mask is transposed: row i is the query, and it may see keys j ≤ i."),
        (0, _softmax_rows(np.where(future, -np.inf, scores), axis=-2),
         "softmax along the wrong axis: each query's weights over the keys (the last axis) sum to 1."),
    ])


def check_masked_attention_weights(masked_attention_weights) -> bool:
    """Exercise 10: ``masked_attention_weights(scores)`` = softmax over keys of the causally masked scores."""
    __tracebackhide__ = True
    rng = _rng(10)
    shapes = [((4, 4), 1.0), ((2, 3, 5, 5), 1.0), ((1, 1), 1.0), ((3, 6, 6), 100.0)]
    cases = [_masked_attention_case(rng.standard_normal(s) * scale) for s, scale in shapes]
    return _passed(10, _grade(_MASKED_ATTENTION, masked_attention_weights, cases))


# ---- the registry ------------------------------------------------------------------------------
EXERCISES = {
    1: ("unbroadcast", check_unbroadcast),
    2: ("matmul_backward", check_matmul_backward),
    3: ("cross_entropy_backward", check_cross_entropy_backward),
    4: ("layer_norm_backward", check_layer_norm_backward),
    5: ("causal_mask", check_causal_mask),
    6: ("lora_forward", check_lora_forward),
    7: ("merge_unmerge", check_merge_unmerge),
    8: ("trainable_params", check_lora_trainable_params),
    9: ("subspace_similarity", check_subspace_similarity),
    10: ("masked_attention", check_masked_attention_weights),
}


def functions_needed(number: int) -> list[str]:
    """The names of the functions exercise ``number`` asks for: its checker's parameter names.

    >>> functions_needed(7)
    ['merge', 'unmerge']
    """
    return list(inspect.signature(EXERCISES[number][1]).parameters)


def check_all(module) -> list[int]:
    """Run every exercise whose functions ``module`` defines; returns their numbers (raises at the first failure).

    ``module`` is anything with attributes: a solution module, or a namespace of the student's functions.
    """
    __tracebackhide__ = True
    passed = []
    for number, (_, checker) in EXERCISES.items():
        fns = [getattr(module, name, None) for name in functions_needed(number)]
        if all(callable(fn) for fn in fns):
            checker(*fns)
            passed.append(number)
    if not passed:
        wanted = ", ".join(name for n in EXERCISES for name in functions_needed(n))
        raise ValueError(f"check_all: {getattr(module, '__name__', module)!r} defines none of the exercise "
                         f"functions ({wanted})")
    return passed
