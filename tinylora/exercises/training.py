"""Training machinery: one AdamW step (14), and a new engine op written with ``Tensor.from_op`` (15).

The expected answers come from tinylora's own ``optim.AdamW`` and from the engine's existing ops.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..nn import Parameter
from ..optim import AdamW
from ..tensor import Tensor
from .engine import Exercise, Mistake, Output, Part, Verdict, check

__all__ = ["check_adamw_step", "check_softplus_op"]


# ---- 14. one AdamW step ------------------------------------------------------------------------
def _adamw_draw(rng, k):
    shape = tuple(int(s) for s in rng.integers(1, 6, size=int(rng.integers(1, 3))))
    t = [1, int(rng.integers(2, 11)), int(rng.integers(100, 1001)), int(rng.integers(2, 6)), 1,
         int(rng.integers(2, 30))][k]
    m = np.zeros(shape) if t == 1 else rng.standard_normal(shape) * 0.1
    v = np.zeros(shape) if t == 1 else rng.uniform(0.001, 0.05, size=shape)
    return {"w": rng.standard_normal(shape), "grad": rng.standard_normal(shape), "m": m, "v": v, "t": t,
            "lr": float(rng.uniform(0.01, 0.1)), "beta1": float(rng.choice([0.9, 0.8])),
            "beta2": float(rng.choice([0.999, 0.95])),
            "eps": float(rng.uniform(0.01, 0.3)) if k == 4 else 1e-8,
            "weight_decay": float(rng.uniform(0.1, 0.5)) if k in (3, 5) else float(rng.choice([0.0, 0.01]))}


def _adamw_reference(w, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    p = Parameter(w.copy())
    p.grad = grad.copy()
    opt = AdamW([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    opt.state[p] = {"step": t - 1, "exp_avg": m.copy(), "exp_avg_sq": v.copy()}
    opt.step()
    return p.data, opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]


def _adamw(w, g, m, v, t, lr, b1, b2, eps, wd, correct=True, coupled=False, wd_lr=True, eps_in=False,
           swap=False):
    if swap:
        b1, b2 = b2, b1
    if coupled:
        g = g + wd * w
    else:
        w = w * (1 - (lr * wd if wd_lr else wd))
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mh, vh = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if correct else (m, v)
    return w - lr * mh / (np.sqrt(vh + eps) if eps_in else np.sqrt(vh) + eps), m, v


ADAMW = Exercise(
    14, "adamw_step", "AdamW step", (Part("adamw_step", (
        Output("w", shape_of="w"), Output("m", shape_of="w"), Output("v", shape_of="w")), _adamw_draw,
        _adamw_reference, (
        Mistake("no_bias_correction", lambda *a: _adamw(*a, correct=False),
                "m and v start at 0, so early on they are too small: divide them by 1 − β1ᵗ and 1 − β2ᵗ."),
        Mistake("coupled_decay", lambda *a: _adamw(*a, coupled=True),
                "that is Adam with L2 (the decay added to the gradient); AdamW decays the weight itself, "
                "apart from the moments."),
        Mistake("decay_without_lr", lambda *a: _adamw(*a, wd_lr=False),
                "the decoupled decay is scaled by the learning rate: w ← w·(1 − lr·weight_decay)."),
        Mistake("eps_inside_root", lambda *a: _adamw(*a, eps_in=True),
                "ε is added after the square root: m̂ / (√v̂ + ε)."),
        Mistake("betas_swapped", lambda *a: _adamw(*a, swap=True),
                "β1 goes with the first moment m (the mean of g), β2 with the second moment v (of g²)."),
    )),),
    hint="four moves: decay the weight, update the two moving averages, correct their start-up bias, then "
         "step against m̂/√v̂.",
    formula="w ← w(1 − lr·wd); m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²; m̂ = m/(1 − β1ᵗ), "
            "v̂ = v/(1 − β2ᵗ); w ← w − lr·m̂/(√v̂ + ε). Return (w, m, v).",
    points=2, minutes=20, checker="check_adamw_step")


def check_adamw_step(adamw_step, *, seed=None, hint=False) -> bool:
    """Exercise 14: ``adamw_step(w, grad, m, v, t, lr, beta1, beta2, eps, weight_decay) -> (w, m, v)``."""
    __tracebackhide__ = True
    return check(ADAMW, [adamw_step], seed, hint)


# ---- 15. a new op with Tensor.from_op: softplus ------------------------------------------------
def _softplus_draw(rng, k):
    shape = tuple(int(s) for s in rng.integers(1, 7, size=int(rng.integers(1, 4))))
    z = rng.standard_normal(shape)
    x = z * (rng.uniform(800, 3000) / z.flat[np.abs(z).argmax()]) if k in (1, 4) else z * 2.0
    return {"x": x, "grad_out": rng.standard_normal(shape)}


def _softplus_reference(x, grad_out):
    """softplus(x) = −log_softmax([0, x])[0], through the engine's own stable ops."""
    t = Tensor(x, requires_grad=True)
    out = -F.log_softmax(F.stack([Tensor(np.zeros_like(x)), t], axis=-1), axis=-1)[..., 0]
    out.backward(grad_out)
    return out.data, t.grad


def _call_op(fn, args):
    """Run the student's op on a Tensor, backpropagate grad_out, return (out.data, x.grad)."""
    t = Tensor(args["x"], requires_grad=True)
    out = fn(t)
    if not isinstance(out, Tensor):
        raise Verdict(f"softplus should return a tinylora Tensor (made with Tensor.from_op); got "
                      f"{type(out).__name__}.")
    out.backward(args["grad_out"])
    if t.grad is None:
        raise Verdict("no gradient reached x: pass (x,) as the parents of Tensor.from_op.")
    return out.data, t.grad


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def _op(forward, backward):
    return lambda t: Tensor.from_op(forward(t.data), (t,), lambda g: (backward(g, t.data),))


SOFTPLUS = Exercise(
    15, "softplus_op", "a new op: softplus", (Part("softplus", (
        Output("out", shape_of="x"), Output("x.grad", shape_of="x")), _softplus_draw, _softplus_reference, (
        Mistake("grad_exp", _op(lambda a: np.logaddexp(0.0, a), lambda g, a: g * np.exp(a)),
                "d/dx log(1 + eˣ) = eˣ/(1 + eˣ), the sigmoid: you dropped the denominator."),
        Mistake("no_chain_rule", _op(lambda a: np.logaddexp(0.0, a), lambda g, a: _sigmoid(a)),
                "backward receives the output's gradient g: return g · sigmoid(x) (the chain rule)."),
        Mistake("sign", _op(lambda a: np.logaddexp(0.0, a), lambda g, a: g * _sigmoid(-a)),
                "the slope of softplus is sigmoid(x), which tends to 1 for large x, not sigmoid(−x)."),
        Mistake("unstable", _op(lambda a: np.log1p(np.exp(a)), lambda g, a: g * _sigmoid(a)),
                "exp(x) overflows for x in the hundreds: use max(x, 0) + log1p(exp(−|x|)) (or "
                "np.logaddexp(0, x))."),
    ), call=_call_op),),
    hint="an op is a forward on arrays plus a backward closure that maps the output's gradient to the "
         "input's; Tensor.from_op(data, parents, backward) records both.",
    formula="Tensor.from_op(np.logaddexp(0, x.data), (x,), lambda g: (g * sigmoid(x.data),)) with "
            "sigmoid(a) = 1/(1 + e^(−a)), computed without overflow.",
    points=2, minutes=20, checker="check_softplus_op",
    error_hint="backward(g) must return a tuple with one gradient per parent, e.g. (g * slope,).",
    nan_hint="exp overflows for large |x|: write softplus and its slope in a form that never exponentiates "
             "a large positive number.")


def check_softplus_op(softplus, *, seed=None, hint=False) -> bool:
    """Exercise 15: ``softplus(x: Tensor) -> Tensor`` built with ``Tensor.from_op``, forward and backward."""
    __tracebackhide__ = True
    return check(SOFTPLUS, [softplus], seed, hint)

