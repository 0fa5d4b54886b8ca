"""Finite-difference gradient checking in float64.

``gradcheck(fn, *inputs)`` compares the engine's gradient of ``sum(fn(*inputs) * u)``, for a
random non-uniform upstream gradient ``u``, with central differences
``(f(x + eps) - f(x - eps)) / (2 eps)`` for every element of every input that requires grad.

>>> import numpy as np
>>> from tinylora import Tensor
>>> x = Tensor(np.array([[1.0, -2.0], [0.5, 3.0]]), requires_grad=True)
>>> gradcheck(lambda t: (t * t).sum(axis=1), x)
True
"""
from __future__ import annotations

import numpy as np

from .backend import asnumpy
from .tensor import Tensor, no_grad


def _as_output_tensor(out, where):
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__} ({where})")
    return out


def gradcheck(fn, *inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0) -> bool:
    """Check ``fn``'s backward against float64 central differences; return True or raise AssertionError.

    Every Tensor input with ``requires_grad=True`` is checked and must be float64. The
    AssertionError names the input (by position), the element index, and both values.
    """
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; "
                            "finite differences need float64 (create it with dtype=np.float64)")
    out = _as_output_tensor(fn(*inputs), "forward")
    xp = out.xp
    rng = np.random.default_rng(seed)
    upstream = xp.asarray(rng.uniform(0.5, 1.5, size=out.shape) * rng.choice([-1.0, 1.0], size=out.shape))
    for i in checked:
        inputs[i].grad = None
    out.backward(upstream)

    def objective():
        with no_grad():
            return float((_as_output_tensor(fn(*inputs), "re-evaluation").data * upstream).sum())

    for i in checked:
        x = inputs[i]
        analytic = asnumpy(x.grad) if x.grad is not None else np.zeros(x.shape)
        flat = x._data.reshape(-1)  # a view: perturbing it perturbs x (restored after each element)
        for k in range(flat.size):
            original = flat[k].item()
            flat[k] = original + eps
            plus = objective()
            flat[k] = original - eps
            minus = objective()
            flat[k] = original
            numeric = (plus - minus) / (2 * eps)
            got = analytic.reshape(-1)[k]
            if not abs(got - numeric) <= atol + rtol * abs(numeric):
                index = np.unravel_index(k, x.shape) if x.ndim else ()
                raise AssertionError(f"gradcheck failed for input {i} (shape {x.shape}) "
                                     f"at element {tuple(int(j) for j in index)}: "
                                     f"analytic {got:.8g} vs numeric {numeric:.8g} "
                                     f"(atol={atol}, rtol={rtol})")
    return True
