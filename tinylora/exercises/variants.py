"""LoRA's backward (11), rsLoRA's scaling (16) and DoRA's magnitude and direction (17).

The expected answers come from tinylora's own ``functional.lora_linear`` backward, ``lora_scaling``
and the DoRA variant of ``LoRALinear``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..lora.variants import lora_scaling
from ..tensor import Tensor
from .adapters import draw_adapter, lora_layer
from .engine import Exercise, Mistake, Output, Part, check

__all__ = ["check_lora_backward", "check_rslora_scaling", "check_dora"]


# ---- 11. LoRA backward -------------------------------------------------------------------------
def _backward_draw(rng, k):
    w = draw_adapter(rng, k)
    if k == 0:
        w["B"] = np.zeros_like(w["B"])    # step 0: a fresh adapter
    lead = [(4,), (3,), (2, 3), (5,), (2, 2, 3), (6,)][k]
    x = rng.standard_normal(lead + (w["W0"].shape[1],))
    return {"x": x, "A": w["A"], "B": w["B"], "alpha": w["alpha"], "r": w["r"],
            "grad_out": rng.standard_normal(lead + (w["W0"].shape[0],))}


def _backward_reference(x, A, B, alpha, r, grad_out):
    ta, tb = Tensor(A, requires_grad=True), Tensor(B, requires_grad=True)
    W0 = Tensor(np.zeros((B.shape[0], A.shape[1])))
    F.lora_linear(Tensor(x), W0, None, ta, tb, lora_scaling(alpha, r)).backward(grad_out)
    return ta.grad, tb.grad


def _lora_grads(x, A, B, s, g, mean=False, keep_batch=False):
    if keep_batch:      # batched products, never summed over the leading axes
        return s * (g @ B).swapaxes(-1, -2) @ x, s * g.swapaxes(-1, -2) @ (x @ A.T)
    X, G = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    n = len(X) if mean else 1
    return s * (G @ B).T @ X / n, s * G.T @ (X @ A.T) / n


LORA_BACKWARD = Exercise(
    11, "lora_backward", "LoRA backward", (Part("lora_backward", (
        Output("dA", shape_of="A"), Output("dB", shape_of="B")), _backward_draw, _backward_reference, (
        Mistake("no_scaling", lambda x, A, B, a, r, g: _lora_grads(x, A, B, 1.0, g),
                "forgot the scaling: both gradients carry the factor alpha/r of the forward."),
        Mistake("floor_division", lambda x, A, B, a, r, g: _lora_grads(x, A, B, a // r, g),
                "alpha // r rounds down when r does not divide alpha: use alpha / r."),
        Mistake("swapped", lambda x, A, B, a, r, g: _lora_grads(x, A, B, a / r, g)[::-1],
                "you returned (dB, dA); return them in the order (dA, dB)."),
        Mistake("mean_over_rows", lambda x, A, B, a, r, g: _lora_grads(x, A, B, a / r, g, mean=True),
                "the same A and B serve every row of x, so their gradients *sum* over the rows; grad_out "
                "already holds any 1/N of the loss."),
        Mistake("batch_not_summed", lambda x, A, B, a, r, g: _lora_grads(x, A, B, a / r, g, keep_batch=True),
                "x may have several leading axes: sum over all of them (flatten x and grad_out to 2-D "
                "first), so dA has A's shape."),
    )),),
    hint="h = x W0ᵀ + s·(x Aᵀ) Bᵀ: treat u = x Aᵀ (..., r) as the input of B's matmul, and dh/du as the "
         "gradient flowing back into A's matmul. At step 0, B = 0: which of the two gradients vanishes?",
    formula="with s = alpha/r and X, G the rows of x and grad_out: dB = s·Gᵀ (X Aᵀ) (out, r) and dA = "
            "s·(G B)ᵀ X (r, in). With B = 0, dA = 0 and dB ≠ 0.",
    points=3, minutes=25, checker="check_lora_backward",
    error_hint="x (..., in), A (r, in), B (out, r), grad_out (..., out); reshape x and grad_out to 2-D rows "
               "first, e.g. x.reshape(-1, x.shape[-1]).")


def check_lora_backward(lora_backward, *, seed=None, hint=False) -> bool:
    """Exercise 11: ``lora_backward(x, A, B, alpha, r, grad_out) -> (dA, dB)`` for h = x W0ᵀ + s x Aᵀ Bᵀ."""
    __tracebackhide__ = True
    return check(LORA_BACKWARD, [lora_backward], seed, hint)


# ---- 16. rsLoRA scaling ------------------------------------------------------------------------
def _scaling_draw(rng, k):
    r = int(rng.choice([2, 3, 5, 6, 8, 12, 24, 48])) if k < 4 else int(rng.choice([1, 4, 16, 64]))
    alpha = int(rng.integers(1, 64)) * 2 + 1 if k % 2 else float(rng.choice([8.0, 16.0, 32.0, 2.5]))
    return {"alpha": alpha, "r": r, "use_rslora": k in (0, 1, 4)}


def _scaling(a, r, rs, root=math.sqrt, floor=False, ignore=False, inverted=False):
    d = root(r) if rs and not ignore else r
    return d / a if inverted else (a // d if floor else a / d)


RSLORA = Exercise(
    16, "rslora_scaling", "rsLoRA scaling", (Part("rslora_scaling", (Output("scaling", kind="scalar"),),
        _scaling_draw, lambda alpha, r, use_rslora: lora_scaling(alpha, r, use_rslora), (
        Mistake("flag_ignored", lambda a, r, rs: _scaling(a, r, rs, ignore=True),
                "use_rslora=True divides by √r instead of r."),
        Mistake("integer_root", lambda a, r, rs: _scaling(a, r, rs, root=math.isqrt),
                "math.isqrt(r) rounds √r down when r is not a perfect square: use math.sqrt(r)."),
        Mistake("root_of_ratio", lambda a, r, rs: math.sqrt(a / r) if rs else a / r,
                "rsLoRA's scaling is alpha/√r, not √(alpha/r)."),
        Mistake("floor_division", lambda a, r, rs: _scaling(a, r, rs, floor=True),
                "`//` rounds down when the division is not exact: use `/`."),
        Mistake("inverted", lambda a, r, rs: _scaling(a, r, rs, inverted=True),
                "the scaling multiplies alpha: alpha/r (or alpha/√r), not r/alpha."),
    ), cases=6),),
    hint="plain LoRA divides alpha by r; rsLoRA divides by a smaller power of r, so that the update's size "
         "stays steady as r grows (Kalajdzievski, 2023).",
    formula="scaling = alpha / r, or alpha / √r with use_rslora=True.",
    points=1, minutes=5, checker="check_rslora_scaling")


def check_rslora_scaling(rslora_scaling, *, seed=None, hint=False) -> bool:
    """Exercise 16: ``rslora_scaling(alpha, r, use_rslora) -> float`` (alpha/r, or alpha/√r)."""
    __tracebackhide__ = True
    return check(RSLORA, [rslora_scaling], seed, hint)


# ---- 17. DoRA: magnitude and direction ---------------------------------------------------------
def _dora_layer(W0, A, B, alpha, r):
    return lora_layer(W0, A, B, alpha, r, use_dora=True)


def _magnitude_reference(W0, A, B, alpha, r):
    layer = _dora_layer(W0, A, B, alpha, r)
    adapter = layer.adapters["default"]
    adapter.variant.init(layer, adapter)     # m = the row norms of W0 + s·B·A
    return adapter.lora_magnitude.data


def _forward_draw(rng, k):
    w = draw_adapter(rng, k, square=k == 0)
    x = rng.standard_normal([(3,), (2, 3), (4,), (2, 2, 2), (5,), (1,)][k] + (w["W0"].shape[1],))
    m = np.abs(rng.standard_normal(w["W0"].shape[0])) + 0.5
    return {"x": x, **w, "magnitude": m}


def _forward_reference(x, W0, A, B, alpha, r, magnitude):
    layer = _dora_layer(W0, A, B, alpha, r)
    layer.adapters["default"].lora_magnitude.data = magnitude.copy()
    return layer(Tensor(x)).data


def _norms(W0, A, B, s, axis=1, squared=False, frobenius=False, of_w0=False):
    W = W0 if of_w0 else W0 + s * B @ A
    if frobenius:
        return np.full(W.shape[0], np.sqrt((W * W).sum()))
    n = (W * W).sum(axis=axis)
    return n if squared else np.sqrt(n)


def _dora_h(x, W0, A, B, s, m, **how):
    W = W0 + s * B @ A
    norm = 1.0 if how.pop("no_norm", False) else _norms(W0, A, B, s, **how)
    return x @ (W * (m / norm)[:, None]).T


DORA = Exercise(
    17, "dora", "DoRA magnitude and direction", (
        Part("dora_magnitude", (Output("magnitude", shape_of="(out,)"),),
             lambda rng, k: draw_adapter(rng, k, square=k == 0), _magnitude_reference, (
            Mistake("column_norms", lambda W0, A, B, a, r: _norms(W0, A, B, a / r, axis=0),
                    "W is (out, in): the magnitude is one norm per output row (axis=1), not per column."),
            Mistake("squared", lambda W0, A, B, a, r: _norms(W0, A, B, a / r, squared=True),
                    "take the square root: the magnitude is the Euclidean norm of each row."),
            Mistake("of_w0", lambda W0, A, B, a, r: _norms(W0, A, B, a / r, of_w0=True),
                    "the magnitude starts as the norms of the adapted weight W0 + (alpha/r)·B A, so that a "
                    "trained adapter merges exactly."),
            Mistake("no_scaling", lambda W0, A, B, a, r: _norms(W0, A, B, 1.0),
                    "forgot the scaling: the adapted weight is W0 + (alpha/r)·B A."),
        )),
        Part("dora_forward", (Output("h"),), _forward_draw, _forward_reference, (
            Mistake("no_direction", lambda x, W0, A, B, a, r, m: _dora_h(x, W0, A, B, a / r, m, no_norm=True),
                    "divide each row by its norm first: the direction has unit rows, the magnitude m sets "
                    "their length."),
            Mistake("column_norms", lambda x, W0, A, B, a, r, m: _dora_h(x, W0, A, B, a / r, m, axis=0),
                    "W is (out, in): normalise each output row (axis=1), not each column."),
            Mistake("w0_norms", lambda x, W0, A, B, a, r, m: _dora_h(x, W0, A, B, a / r, m, of_w0=True),
                    "normalise by the norms of W0 + (alpha/r)·B A, the weight whose direction you use."),
            Mistake("plain_lora", lambda x, W0, A, B, a, r, m: x @ (W0 + (a / r) * B @ A).T,
                    "that is plain LoRA: DoRA rescales each row of W0 + (alpha/r)·B A to length m."),
        ))),
    hint="DoRA splits the adapted weight W = W0 + (alpha/r)·B A into a length per output row and a "
         "direction with unit rows.",
    formula="W = W0 + (alpha/r)·B A; magnitude m = ‖W‖ of each row (axis=1); h = x (m/‖W‖_row · W)ᵀ, i.e. "
            "h[..., o] = m[o]/‖W[o]‖ · (x Wᵀ)[..., o].",
    points=2, minutes=20, checker="check_dora",
    error_hint="W0 (out, in), A (r, in), B (out, r); the magnitude is (out,): scale W's rows by m[:, None].")


def check_dora(dora_magnitude, dora_forward, *, seed=None, hint=False) -> bool:
    """Exercise 17: ``dora_magnitude(W0, A, B, alpha, r)`` and ``dora_forward(x, ..., magnitude)``."""
    __tracebackhide__ = True
    return check(DORA, [dora_magnitude, dora_forward], seed, hint)
