"""Exercises 1-4, backpropagation by hand: unbroadcast, matmul, softmax + cross-entropy, layer norm.

Each checker computes the expected gradients with the engine's own backward (``Tensor``,
``functional``) and lists the usual wrong answers with their hints.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .engine import Case, Exercise, Output, case_rng, grade, maybe, passed

__all__ = ["check_unbroadcast", "check_matmul_backward", "check_cross_entropy_backward",
           "check_layer_norm_backward"]


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
         "you summed the extra leading axes, but not the axes "
         "where `shape` has a 1: sum those too, with keepdims=True."),
        (0, grad.sum(axis=axes) if ones else None,
         "right numbers, but the size-1 axes vanished: sum them "
         "with keepdims=True (or reshape to `shape` at the end)."),
        (0, grad.mean(axis=axes, keepdims=True).reshape(shape) if axes else None,
         "every broadcast copy of an input element passes its "
         "own gradient back, and these add up: use sum, not mean."),
        (0, grad, "you returned grad as is: a broadcast input gets the *sum* of grad "
                  "over the axes it was stretched along, here the axes where `shape` "
                  "has a 1 (keep them, keepdims=True) and any extra leading axes."),
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
    rng = case_rng(1)
    pairs = [((4, 3), (3,)), ((4, 3), (4, 1)), ((2, 5, 4, 3), (5, 1, 3)), ((3, 4, 5, 2), (3, 1, 5, 1)),
             ((4, 5), (1, 1)), ((6,), ()), ((2, 3), (2, 3))]
    cases = [_unbroadcast_case(rng.standard_normal(g), s) for g, s in pairs]
    return passed(1, grade(_UNBROADCAST, unbroadcast, cases))


# ---- 2. matmul backward ------------------------------------------------------------------------
_MATMUL = Exercise(
    2, "matmul backward", (Output("grad_a", shape_of="a"), Output("grad_b", shape_of="b")),
    hint="for out = a @ b: grad_a = grad_out @ bᵀ and grad_b = "
         "aᵀ @ grad_out. Each gradient has its input's shape.",
    error_hint="grad_out is (m, n), a is (m, k), b is (k, n). grad_a must be (m, k): which of b or bᵀ turns "
               "(m, n) into (m, k)? Likewise grad_b must be (k, n).")


def _matmul_case(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> Case:
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    (ta @ tb).backward(g)
    ga, gb = ta.grad, tb.grad
    return Case({"a": a, "b": b, "grad_out": g}, (ga, gb), [
        (0, gb, "you returned (grad_b, grad_a); return them in the order (grad_a, grad_b)."),
        (0, maybe(lambda: g @ b), "missing transpose: grad_a = grad_out @ bᵀ, not grad_out @ b."),
        (1, maybe(lambda: a @ g), "missing transpose: grad_b = aᵀ @ grad_out, not a @ grad_out."),
    ])


def check_matmul_backward(matmul_backward) -> bool:
    """Exercise 2: ``matmul_backward(a, b, grad_out) -> (grad_a, grad_b)`` for out = a @ b."""
    __tracebackhide__ = True
    rng = case_rng(2)
    shapes = [(3, 3, 3), (4, 3, 2), (1, 5, 1), (2, 6, 4), (5, 1, 3)]   # (m, k, n)
    cases = [_matmul_case(rng.standard_normal((m, k)), rng.standard_normal((k, n)),
                          rng.standard_normal((m, n)))
             for m, k, n in shapes]
    return passed(2, grade(_MATMUL, matmul_backward, cases))


# ---- 3. softmax + cross-entropy backward -------------------------------------------------------
_CROSS_ENTROPY = Exercise(
    3, "cross-entropy backward", (Output("dlogits", shape_of="logits"),),
    hint="for the mean loss over N rows, dlogits = (softmax(logits) "
         "− one_hot(targets)) / N, softmax along each row.",
    error_hint="logits is (N, C) and targets is (N,) of ints; "
               "one_hot(targets) is (N, C), e.g. np.eye(C)[targets].",
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
        (0, (onehot - p) / n,
         "wrong sign: the gradient is softmax − one_hot "
         "(push up the target's logit by pushing the loss *down*)."),
        (0, p / n, "forgot to subtract the one-hot of the targets: (softmax − one_hot) / N."),
        (0, (p - onehot) / (n * c), "divided by N·C: the mean is over the N rows, not over every logit."),
        (0, (_softmax_rows(logits, axis=0) - onehot) / n,
         "softmax along the wrong axis: normalise each row (axis=-1)."),
    ])


def check_cross_entropy_backward(cross_entropy_backward) -> bool:
    """Exercise 3: ``cross_entropy_backward(logits, targets) -> dlogits`` for the mean cross-entropy."""
    __tracebackhide__ = True
    rng = case_rng(3)
    cases = []
    shapes = [((4, 5), 1, 0), ((1, 3), 1, 0), ((6, 2), 2, 0), ((8, 10), 1, 0), ((3, 7), 50, 1000)]
    for (n, c), scale, shift in shapes:
        logits = rng.standard_normal((n, c)) * scale + shift
        cases.append(_cross_entropy_case(logits, rng.integers(0, c, size=n)))
    return passed(3, grade(_CROSS_ENTROPY, cross_entropy_backward, cases))


# ---- 4. layer-norm backward --------------------------------------------------------------------
_LAYER_NORM = Exercise(
    4, "layer-norm backward", (Output("dx", shape_of="x"), Output("dweight", shape_of="weight"),
                               Output("dbias", shape_of="weight")),
    hint="with x̂ = (x − μ)/√(σ² + ε) and ĝ = grad_out·weight: dx = (ĝ − mean(ĝ) "
         "− x̂·mean(ĝ·x̂)) / √(σ² + ε) (means over the last axis); dweight = Σ "
         "grad_out·x̂ and dbias = Σ grad_out over every axis but the last.",
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
        only_axis_0 = "sum over *every* leading axis, axis=tuple(range(x.ndim - 1)), not only axis 0."
        mistakes += [(1, (g * xhat).sum(axis=0), only_axis_0), (2, g.sum(axis=0), only_axis_0)]
    return Case({"x": x, "weight": weight, "grad_out": g, "eps": eps}, (tx.grad, tw.grad, tb.grad), mistakes)


def check_layer_norm_backward(layer_norm_backward) -> bool:
    """Exercise 4: ``layer_norm_backward(x, weight, grad_out, eps) -> (dx, dweight, dbias)``."""
    __tracebackhide__ = True
    rng = case_rng(4)
    cases = []
    for shape, eps, spread in [((4, 5), 1e-5, 1.0), ((2, 3, 6), 1e-5, 3.0), ((1, 8), 1e-5, 1.0),
                               ((3, 2, 2, 4), 0.5, 0.5)]:
        x = rng.standard_normal(shape) * spread + rng.standard_normal()
        w = rng.uniform(0.5, 1.5, size=shape[-1]) * rng.choice([-1, 1], size=shape[-1])
        cases.append(_layer_norm_case(x, w, rng.standard_normal(shape), eps))
    return passed(4, grade(_LAYER_NORM, layer_norm_backward, cases))

