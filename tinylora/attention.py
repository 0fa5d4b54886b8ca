"""Scaled dot-product attention with a fused backward, and the causal mask it adds.

``tinylora.functional`` re-exports it, so ``F.scaled_dot_product_attention`` works as before.

>>> import numpy as np
>>> from tinylora import Tensor
>>> q = k = v = Tensor(np.ones((1, 2, 3, 4), dtype=np.float32))  # host-ok (example input)
>>> scaled_dot_product_attention(q, k, v).shape
(1, 2, 3, 4)
"""
from __future__ import annotations

import functools
import itertools
import math

from ._op_checks import float_tensor, same_device, tensor_arg
from ._validate import check_bool
from .tensor import Tensor, _result, unbroadcast

__all__ = ["scaled_dot_product_attention"]


def scaled_dot_product_attention(q, k, v, causal: bool = True) -> Tensor:
    """``softmax(q k^T / sqrt(hd) + mask) v`` with a fused backward.

    Shapes: q (..., T, hd), k (..., S, hd), v (..., S, hv) -> (..., T, hv); usually
    (B, n_head, T, head_dim). With ``causal``, query t sees keys s <= t + (S - T): the queries
    are the last T of the S positions (T == S in training; T < S when keys are cached), so
    causal attention needs T <= S. Grouped-query attention passes k, v as (..., 1, S, hd), shared
    by the G query heads of q (..., G, T, hd): the groups become rows, one GEMM per kv head.

    >>> import numpy as np
    >>> from tinylora import Tensor
    >>> q = k = Tensor(np.zeros((1, 1, 2, 4), dtype=np.float32))  # host-ok (example input)
    >>> v = Tensor(np.array([[[[1.0], [3.0]]]], dtype=np.float32))  # host-ok (example input)
    >>> scaled_dot_product_attention(q, k, v).data.reshape(-1)  # row 0 sees only key 0
    array([1., 2.], dtype=float32)
    """
    fn = "scaled_dot_product_attention"
    q, k, v = (tensor_arg(t, name, fn) for t, name in ((q, "q"), (k, "k"), (v, "v")))
    xp = same_device(fn, q=q, k=k, v=v)
    for name, t in (("q", q), ("k", k), ("v", v)):
        float_tensor(t, name, fn)
    check_bool("causal", causal, where=fn)
    if min(q.ndim, k.ndim, v.ndim) < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{fn}: need q (..., T, hd), k (..., S, hd), v (..., S, hv); "
                         f"got q {q.shape}, k {k.shape}, v {v.shape}")
    if not _broadcastable(q.shape[:-2], k.shape[:-2], v.shape[:-2]):
        raise ValueError(f"{fn}: the leading (batch, heads) dimensions of q {q.shape}, k {k.shape} and "
                         f"v {v.shape} do not match; with fewer key/value heads (GQA), repeat k and v first")
    T, S = q.shape[-2], k.shape[-2]
    if T == 0 or S == 0 or q.shape[-1] == 0:
        raise ValueError(f"{fn}: needs at least one query, one key position and head_dim >= 1; "
                         f"got q {q.shape}, k {k.shape}")
    if causal and T > S:
        raise ValueError(f"{fn}: causal attention needs T <= S (queries are the last T "
                         f"of S key positions); got T={T}, S={S}")
    scale = 1.0 / math.sqrt(q.shape[-1])
    # Grouped queries (GQA: k, v of shape (..., 1, S, hd) shared by q's (..., G, T, hd)): the G groups
    # are folded into the rows, so each kv head is one GEMM of G*T rows, not G broadcast ones.
    fold = _shared_by_groups(q.shape, k.shape, v.shape)
    rows = q.shape[:-3] + (q.shape[-3] * T,) if fold else q.shape[:-2] + (T,)  # (..., [G*]T)
    kd = k.data[..., 0, :, :] if fold else k.data  # (..., S, hd)
    vd = v.data[..., 0, :, :] if fold else v.data  # (..., S, hv)
    q_scaled = (q.data * scale).reshape(rows + q.shape[-1:])  # (..., [G*]T, hd): cheaper than the scores
    scores = q_scaled @ kd.swapaxes(-1, -2)  # (..., [G*]T, S), a new array
    if causal:  # -inf above the shifted diagonal, the same (T, S) mask for every group
        per_query = scores.reshape(-1, T, S)  # a view of the new array: the mask is added in place
        per_query += _causal_mask(T, S, scores.dtype, xp)
    scores -= scores.max(axis=-1, keepdims=True)  # no overflow in exp
    probs = _exp_normalise(scores, -1, xp)  # (..., [G*]T, S), the same array; saved for backward
    out = probs @ vd  # (..., [G*]T, hv)

    def fit(grad, t):  # a gradient in t's shape: unfolded, or summed over broadcast axes
        return grad.reshape(t.shape) if fold else unbroadcast(grad, t.shape)

    def backward(g):  # g: (..., T, hv)
        g = g.reshape(out.shape)  # (..., [G*]T, hv)
        gv = fit(probs.swapaxes(-1, -2) @ g, v) if v.requires_grad else None  # (..., S, hv)
        gq = gk = None
        if q.requires_grad or k.requires_grad:
            gs = g @ vd.swapaxes(-1, -2)  # (..., [G*]T, S): d loss / d probs, then / d scores in place
            gs -= (g * out).sum(axis=-1, keepdims=True)  # <dprobs, probs> per row equals <g, out>
            gs *= probs  # softmax backward
            if q.requires_grad:
                gq = gs @ kd  # (..., [G*]T, hd)
                gq *= scale
                gq = fit(gq, q)
            gk = fit(gs.swapaxes(-1, -2) @ q_scaled, k) if k.requires_grad else None  # (..., S, hd)
        return gq, gk, gv
    return _result(out.reshape(q.shape[:-1] + v.shape[-1:]) if fold else out, (q, k, v), backward)


def _shared_by_groups(q_shape, k_shape, v_shape) -> bool:
    """True when k and v are (..., 1, S, h) and q is (..., G, T, hd) with the same leading dimensions."""
    return (len(q_shape) == len(k_shape) == len(v_shape) >= 3 and k_shape[-3] == v_shape[-3] == 1
            and q_shape[:-3] == k_shape[:-3] == v_shape[:-3])


def _exp_normalise(shifted, axis, xp):
    """Softmax of ``shifted`` along ``axis``, in place (``shifted`` is overwritten)."""
    xp.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def _broadcastable(*shapes) -> bool:
    """True when the shapes broadcast together (each dimension equal or 1, from the right)."""
    for dims in itertools.zip_longest(*(reversed(shape) for shape in shapes), fillvalue=1):
        if len(set(dims) - {1}) > 1:
            return False
    return True


@functools.lru_cache(maxsize=16)
def _causal_mask(T: int, S: int, dtype, xp):
    """(T, S) additive mask: 0 where query t may see key s (s <= t + S - T), -inf elsewhere.

    Built once per shape, dtype and array module, then shared: callers only read it. (With CuPy
    it lives on the GPU that was current when it was first built.)
    """
    hidden = xp.triu(xp.ones((T, S), dtype=bool), k=S - T + 1)  # (T, S)
    return xp.where(hidden, -math.inf, 0.0).astype(dtype)
