"""Gradients by hand: unbroadcast 1, matmul 2, cross-entropy 3, layer norm 4, softmax 12, RMSNorm 18.

Each expected gradient comes from the engine's own backward (``Tensor``, ``functional``,
``llama_ops``); each mistake is a wrong implementation a student plausibly writes.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..llama_ops import rms_norm
from ..tensor import Tensor
from .engine import Exercise, Mistake, Output, Part, check

__all__ = ["check_unbroadcast", "check_matmul_backward", "check_cross_entropy_backward",
           "check_layer_norm_backward", "check_softmax_backward", "check_rms_norm_backward", "softmax_rows"]


def softmax_rows(x: np.ndarray, axis: int = -1, stable: bool = True) -> np.ndarray:
    """softmax along ``axis``; ``stable=False`` is the overflowing version some mistakes use."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True) if stable else x)
        return e / e.sum(axis=axis, keepdims=True)


def _grad_of(op, *arrays, g):
    """The engine's gradients of ``op(*tensors)`` for the upstream gradient ``g``."""
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    op(*tensors).backward(g)
    return tuple(t.grad for t in tensors)


def _sizes(rng, n, low=2, high=6):
    return tuple(int(s) for s in rng.integers(low, high, size=n))


# ---- 1. unbroadcast ----------------------------------------------------------------------------
def _unbroadcast_draw(rng, k):
    lead, nd = [(0, 1), (0, 2), (2, 3), (3, 2), (1, 0), (2, 2)][k]
    shape = list(_sizes(rng, nd))
    if k in (1, 2):
        shape[int(rng.integers(nd))] = 1
    if k == 3:
        shape = [1] * nd
    grown = [s if s != 1 else int(rng.integers(2, 5)) for s in shape]
    return {"grad": rng.standard_normal(_sizes(rng, lead) + tuple(grown)), "shape": tuple(shape)}


def _unbroadcast_reference(grad, shape):
    """x + zeros(grad.shape) broadcasts x up to grad's shape; the engine's backward sums it back."""
    return _grad_of(lambda x, z: x + z, np.zeros(shape), np.zeros(grad.shape), g=grad)[0]


def _stretched(grad, shape, lead):
    return tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)


def _reduce_to(grad, shape, reduce):
    lead = grad.ndim - len(shape)
    return reduce(grad, tuple(range(lead)) + _stretched(grad, shape, lead))


def _one_leading_axis(g, s):
    g = g.sum(axis=0) if g.ndim > len(s) else g
    return g.sum(axis=_stretched(g, s, g.ndim - len(s)), keepdims=True)


UNBROADCAST = Exercise(
    1, "unbroadcast", "unbroadcast", (Part("unbroadcast", (Output("result", shape_of="`shape`"),),
                                           _unbroadcast_draw, _unbroadcast_reference, (
        Mistake("mean", lambda g, s: _reduce_to(g, s, lambda a, ax: a.mean(ax, keepdims=True)).reshape(s),
                "every broadcast copy of an input element passes its own gradient back, and these add "
                "up: use sum, not mean."),
        Mistake("no_keepdims", lambda g, s: _reduce_to(g, s, lambda a, ax: a.sum(axis=ax)),
                "right numbers, but the size-1 axes vanished: sum them with keepdims=True."),
        Mistake("leading_only", lambda g, s: g.sum(axis=tuple(range(g.ndim - len(s)))),
                "you summed the extra leading axes, but not the axes where `shape` has a 1: sum those "
                "too, with keepdims=True."),
        Mistake("one_leading_axis", _one_leading_axis,
                "broadcasting can add several axes on the left: sum *all* grad.ndim − len(shape) of them, "
                "not only axis 0."),
        Mistake("unchanged", lambda g, s: g,
                "you returned grad as is: a broadcast input gets the sum of grad over the axes it was "
                "stretched along."),
    ), cases=6),),
    hint="compare grad.shape with `shape` from the right: every axis grad has in excess, and every axis "
         "where `shape` has a 1 but grad does not, was stretched by broadcasting.",
    formula="result = grad.sum(axis=<the grad.ndim − len(shape) leading axes>), then .sum(axis=<the axes "
            "where shape has 1>, keepdims=True), so result.shape == shape.",
    points=2, minutes=15, checker="check_unbroadcast",
    error_hint="grad may have more axes than `shape` (broadcasting adds axes on the left); sum those first.")


def check_unbroadcast(unbroadcast, *, seed=None, hint=False) -> bool:
    """Exercise 1: ``unbroadcast(grad, shape)`` sums a gradient back to an input's shape.

    >>> import numpy as np
    >>> check_unbroadcast(lambda grad, shape: np.zeros(shape), seed=3)    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: Exercise 1 (unbroadcast), seed 3, case 1 of 6: <lambda>(grad (...), shape=(...))
    result is wrong at ...
    """
    __tracebackhide__ = True
    return check(UNBROADCAST, [unbroadcast], seed, hint)


# ---- 2. matmul backward ------------------------------------------------------------------------
def _matmul_draw(rng, k):
    m, kk, n = (int(rng.integers(2, 7)),) * 3 if k == 0 else _sizes(rng, 3, 1, 9)
    return {"a": rng.standard_normal((m, kk)), "b": rng.standard_normal((kk, n)),
            "grad_out": rng.standard_normal((m, n))}


MATMUL = Exercise(
    2, "matmul_backward", "matmul backward", (Part("matmul_backward", (
        Output("grad_a", shape_of="a"), Output("grad_b", shape_of="b")), _matmul_draw,
        lambda a, b, grad_out: _grad_of(lambda x, y: x @ y, a, b, g=grad_out), (
        Mistake("swapped", lambda a, b, g: (a.T @ g, g @ b.T),
                "you returned (grad_b, grad_a); return them in the order (grad_a, grad_b)."),
        Mistake("no_transpose_b", lambda a, b, g: (g @ b, a.T @ g),
                "missing transpose in grad_a: it needs bᵀ, not b."),
        Mistake("no_transpose_a", lambda a, b, g: (g @ b.T, a @ g),
                "missing transpose in grad_b: it needs aᵀ, not a."),
        Mistake("grad_b_transposed", lambda a, b, g: (g @ b.T, g.T @ a),
                "grad_b came out transposed: gᵀ a is (n, k), the transpose of what b needs."),
    )),),
    hint="each gradient has its input's shape: which product of grad_out (m, n) with b (k, n) gives (m, k)?",
    formula="grad_a = grad_out @ bᵀ and grad_b = aᵀ @ grad_out.",
    points=1, minutes=10, checker="check_matmul_backward",
    error_hint="grad_out is (m, n), a is (m, k), b is (k, n). grad_a must be (m, k) and grad_b (k, n).")


def check_matmul_backward(matmul_backward, *, seed=None, hint=False) -> bool:
    """Exercise 2: ``matmul_backward(a, b, grad_out) -> (grad_a, grad_b)`` for out = a @ b."""
    __tracebackhide__ = True
    return check(MATMUL, [matmul_backward], seed, hint)


# ---- 3. softmax + cross-entropy backward -------------------------------------------------------
def _logits(rng, k, shape):
    """Regimes: unit scale, a spread in the hundreds to thousands, a spread plus a shift."""
    z = rng.standard_normal(shape)
    if k == 1:  # the largest entry is +800..3000, so an unshifted exp overflows
        return z * (rng.uniform(800, 3000) / z.flat[np.abs(z).argmax()])
    return z * rng.uniform(100, 1000) + rng.uniform(-2000, 2000) if k == 4 else z


def _cross_entropy_draw(rng, k):
    n = [rng.integers(2, 9), rng.integers(2, 9), 1, rng.integers(2, 6), rng.integers(2, 9),
         rng.integers(30, 71)][k]
    c = int(rng.integers(20, 61)) if k == 3 else int(rng.integers(2, 11))
    return {"logits": _logits(rng, k, (int(n), c)), "targets": rng.integers(0, c, size=int(n))}


def _ce(z, t, stable=True, axis=-1):
    return softmax_rows(z, axis, stable) - np.eye(z.shape[1])[t]


def _ce_reference(logits, targets):
    t = Tensor(logits, requires_grad=True)
    F.cross_entropy(t, targets).backward()
    return t.grad


CROSS_ENTROPY = Exercise(
    3, "cross_entropy_backward", "cross-entropy backward", (Part("cross_entropy_backward", (
        Output("dlogits", shape_of="logits"),), _cross_entropy_draw, _ce_reference, (
        Mistake("no_mean", lambda z, t: _ce(z, t),
                "forgot the 1/N of the mean: the loss averages over rows."),
        Mistake("sign", lambda z, t: -_ce(z, t) / len(t), "wrong sign: the gradient is softmax − one_hot."),
        Mistake("no_one_hot", lambda z, t: softmax_rows(z) / len(t),
                "forgot to subtract the one-hot of the targets."),
        Mistake("mean_over_all", lambda z, t: _ce(z, t) / z.size,
                "divided by N·C: the mean is over the N rows, not over every logit."),
        Mistake("axis_0", lambda z, t: _ce(z, t, axis=0) / len(t),
                "softmax along the wrong axis: normalise each row (axis=-1)."),
        Mistake("unstable", lambda z, t: _ce(z, t, stable=False) / len(t),
                "exp of a logit in the hundreds overflows to inf, and inf/inf is NaN: subtract each row's "
                "max before exp (softmax is unchanged by a shift)."),
    )),),
    hint="the loss is the mean over rows of −log softmax(logits)[target]; differentiate one row first.",
    formula="dlogits = (softmax(logits) − one_hot(targets)) / N, softmax along each row.",
    points=2, minutes=20, checker="check_cross_entropy_backward",
    error_hint="logits is (N, C) and targets is (N,) of ints; one_hot(targets) is np.eye(C)[targets].",
    nan_hint="exp of a large logit overflows to inf: subtract each row's max before exp.")


def check_cross_entropy_backward(cross_entropy_backward, *, seed=None, hint=False) -> bool:
    """Exercise 3: ``cross_entropy_backward(logits, targets) -> dlogits`` for the mean cross-entropy."""
    __tracebackhide__ = True
    return check(CROSS_ENTROPY, [cross_entropy_backward], seed, hint)


# ---- 4. layer-norm and 18. RMSNorm backward ----------------------------------------------------
def _norm_draw(rng, k):
    lead = [(4,), (2, 3), (2, 2, 3), (3,), (2,), (1,)][k]
    d = int(rng.integers(40, 71)) if k == 4 else int(rng.integers(3, 9))
    eps = rng.uniform(0.3, 1.0) if k == 3 else 1e-5
    shape = tuple(int(rng.integers(2, n + 3)) for n in lead) + (d,)
    x = rng.standard_normal(shape) * rng.uniform(0.3, 2.0) + rng.standard_normal()
    w = rng.uniform(0.5, 1.5, size=d) * rng.choice([-1, 1], size=d)
    return {"x": x, "weight": w, "grad_out": rng.standard_normal(shape), "eps": float(eps)}


def _ln(x, w, g, eps, const=False, mean_term=True, var_term=True, use_w=True, eps_in=True,
        dw_of_x=False, rows=None):
    c = x - x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt((c ** 2).mean(axis=-1, keepdims=True) + (eps if eps_in else 0.0))
    xh, gh = c * rstd, g * w if use_w else g
    rows = tuple(range(x.ndim - 1)) if rows is None else rows
    dx = gh * rstd if const else rstd * (gh - mean_term * gh.mean(-1, keepdims=True)
                                         - var_term * xh * (gh * xh).mean(-1, keepdims=True))
    return dx, (g * (x if dw_of_x else xh)).sum(axis=rows), g.sum(axis=rows)


def _ln_reference(x, weight, grad_out, eps):
    return _grad_of(lambda a, w, b: F.layer_norm(a, w, b, eps=eps), x, weight, np.zeros_like(weight),
                    g=grad_out)


LAYER_NORM = Exercise(
    4, "layer_norm_backward", "layer-norm backward", (Part("layer_norm_backward", (
        Output("dx", shape_of="x"), Output("dweight", shape_of="weight"), Output("dbias", shape_of="weight")),
        _norm_draw, _ln_reference, (
        Mistake("constants", lambda x, w, g, e: _ln(x, w, g, e, const=True),
                "μ and σ depend on x too: you treated them as constants."),
        Mistake("no_variance_term", lambda x, w, g, e: _ln(x, w, g, e, var_term=False),
                "missing the variance term: σ depends on x, which adds −x̂·mean(ĝ·x̂)."),
        Mistake("no_mean_term", lambda x, w, g, e: _ln(x, w, g, e, mean_term=False),
                "missing the mean term: μ depends on x, which adds −mean(ĝ)."),
        Mistake("no_weight", lambda x, w, g, e: _ln(x, w, g, e, use_w=False),
                "forgot the weight: the gradient reaching x̂ is ĝ = grad_out·weight."),
        Mistake("eps_outside", lambda x, w, g, e: _ln(x, w, g, e, eps_in=False),
                "ε belongs inside the square root: 1/√(σ² + ε)."),
        Mistake("dweight_of_x", lambda x, w, g, e: _ln(x, w, g, e, dw_of_x=True),
                "dweight multiplies grad_out by x̂ (the normalised x), not by x."),
        Mistake("axis_0_only", lambda x, w, g, e: _ln(x, w, g, e, rows=0),
                "sum dweight and dbias over *every* leading axis, axis=tuple(range(x.ndim - 1)), not only "
                "axis 0."),
    )),),
    hint="x̂ = (x − μ)/σ with μ and σ computed from x itself, so dx has three terms: the direct one, one "
         "through μ and one through σ. dweight and dbias collect over every row.",
    formula="with x̂ = (x − μ)/√(σ² + ε) and ĝ = grad_out·weight: dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / "
            "√(σ² + ε) (means over the last axis); dweight = Σ grad_out·x̂ and dbias = Σ grad_out over every "
            "axis but the last.",
    points=3, minutes=30, checker="check_layer_norm_backward",
    error_hint="x is (..., D) and weight is (D,); take means over the last axis with keepdims=True.")


def check_layer_norm_backward(layer_norm_backward, *, seed=None, hint=False) -> bool:
    """Exercise 4: ``layer_norm_backward(x, weight, grad_out, eps) -> (dx, dweight, dbias)``."""
    __tracebackhide__ = True
    return check(LAYER_NORM, [layer_norm_backward], seed, hint)


def _rms(x, w, g, eps, const=False, use_w=True, centre=False, eps_in=True, dw_of_x=False, rows=None):
    rstd = 1 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + (eps if eps_in else 0.0))
    xh, gh = x * rstd, g * w if use_w else g
    rows = tuple(range(x.ndim - 1)) if rows is None else rows
    dx = gh * rstd if const else rstd * (gh - centre * gh.mean(-1, keepdims=True)
                                         - xh * (gh * xh).mean(-1, keepdims=True))
    return dx, (g * (x if dw_of_x else xh)).sum(axis=rows)


RMS_NORM = Exercise(
    18, "rms_norm_backward", "RMSNorm backward", (Part("rms_norm_backward", (
        Output("dx", shape_of="x"), Output("dweight", shape_of="weight")), _norm_draw,
        lambda x, weight, grad_out, eps: _grad_of(lambda a, w: rms_norm(a, w, eps=eps), x, weight,
                                                  g=grad_out), (
        Mistake("constant_rms", lambda x, w, g, e: _rms(x, w, g, e, const=True),
                "the root mean square depends on x too: you treated it as a constant."),
        Mistake("centred", lambda x, w, g, e: _rms(x, w, g, e, centre=True),
                "RMSNorm does not subtract the mean, so its backward has no −mean(ĝ) term (that is "
                "layer norm's)."),
        Mistake("no_weight", lambda x, w, g, e: _rms(x, w, g, e, use_w=False),
                "forgot the weight: the gradient reaching x̂ is ĝ = grad_out·weight."),
        Mistake("eps_outside", lambda x, w, g, e: _rms(x, w, g, e, eps_in=False),
                "ε belongs inside the square root: 1/√(mean(x²) + ε)."),
        Mistake("dweight_of_x", lambda x, w, g, e: _rms(x, w, g, e, dw_of_x=True),
                "dweight multiplies grad_out by x̂ = x/rms, not by x."),
        Mistake("axis_0_only", lambda x, w, g, e: _rms(x, w, g, e, rows=0),
                "sum dweight over *every* leading axis, not only axis 0."),
    )),),
    hint="y = x·rstd·weight with rstd = 1/√(mean(x²) + ε) computed from x itself: dx has the direct term "
         "and one through rstd.",
    formula="with x̂ = x·rstd and ĝ = grad_out·weight: dx = rstd·(ĝ − x̂·mean(ĝ·x̂)) (mean over the last "
            "axis); dweight = Σ grad_out·x̂ over every axis but the last.",
    points=2, minutes=25, checker="check_rms_norm_backward",
    error_hint="x is (..., D) and weight is (D,); take means over the last axis with keepdims=True.")


def check_rms_norm_backward(rms_norm_backward, *, seed=None, hint=False) -> bool:
    """Exercise 18: ``rms_norm_backward(x, weight, grad_out, eps) -> (dx, dweight)`` (Llama's RMSNorm)."""
    __tracebackhide__ = True
    return check(RMS_NORM, [rms_norm_backward], seed, hint)


# ---- 12. softmax backward ----------------------------------------------------------------------
def _softmax_draw(rng, k):
    lead = [(4,), (3,), (2, 3), (2,), (3,), (2, 2, 2)][k]
    c = int(rng.integers(30, 71)) if k == 3 else int(rng.integers(2, 9))
    shape = tuple(int(rng.integers(2, n + 3)) for n in lead) + (c,)
    return {"x": _logits(rng, k, shape), "grad_out": rng.standard_normal(shape)}


def _sm(x, g, stable=True, total=False, diagonal=False, axis=-1):
    p = softmax_rows(x, stable=stable)
    if diagonal:
        return p * (1 - p) * g
    s = (g * p).sum() if total else (g * p).sum(axis=axis, keepdims=True)
    return p * (g - s)


SOFTMAX = Exercise(
    12, "softmax_backward", "softmax backward", (Part("softmax_backward", (Output("dx", shape_of="x"),),
                                                      _softmax_draw,
        lambda x, grad_out: _grad_of(lambda t: F.softmax(t, axis=-1), x, g=grad_out)[0], (
        Mistake("no_sum_term", lambda x, g: softmax_rows(x) * g,
                "each p_j depends on every x_i of its row (through the sum in the denominator): you kept "
                "only the diagonal of the Jacobian's identity part; subtract the row's Σ g·p."),
        Mistake("diagonal_only", lambda x, g: _sm(x, g, diagonal=True),
                "p(1 − p) is only the Jacobian's diagonal; the off-diagonal −p_i p_j terms matter too."),
        Mistake("sum_everything", lambda x, g: _sm(x, g, total=True),
                "Σ g·p is one number per row (axis=-1, keepdims=True), not one for the whole array."),
        Mistake("sum_axis_0", lambda x, g: _sm(x, g, axis=0),
                "Σ g·p runs over the softmax's own axis, the last one, not axis 0."),
        Mistake("unstable", lambda x, g: _sm(x, g, stable=False),
                "exp of an input in the hundreds overflows: subtract each row's max before exp."),
    )),),
    hint="write the Jacobian of one row, ∂p_j/∂x_i = p_j(δ_ij − p_i), and contract it with grad_out.",
    formula="p = softmax(x) over the last axis; dx = p · (grad_out − Σ_j grad_out_j p_j) with the sum over "
            "the last axis (keepdims=True).",
    points=2, minutes=20, checker="check_softmax_backward",
    nan_hint="exp of a large input overflows to inf: subtract each row's max before exp.")


def check_softmax_backward(softmax_backward, *, seed=None, hint=False) -> bool:
    """Exercise 12: ``softmax_backward(x, grad_out) -> dx`` for p = softmax(x) along the last axis."""
    __tracebackhide__ = True
    return check(SOFTMAX, [softmax_backward], seed, hint)
