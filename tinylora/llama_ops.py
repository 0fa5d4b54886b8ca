"""The ops a Llama needs beyond a GPT's: RMSNorm, SiLU, SwiGLU and rotary position embeddings.

Each has its hand-written backward right beside its forward, keeps the input's floating dtype,
and takes its array module from its inputs. ``tinylora.functional`` re-exports them.

>>> import numpy as np
>>> from tinylora import Tensor
>>> x = Tensor(np.array([[3.0, 4.0]], dtype=np.float32))  # host-ok (example input)
>>> rms_norm(x, None, eps=0.0).data.round(4)  # x / sqrt(mean(x^2)) = x / 3.5355
array([[0.8485, 1.1314]], dtype=float32)
"""
from __future__ import annotations

import functools

from ._op_checks import float_tensor, same_device, tensor_arg
from ._validate import check_int, check_real
from .tensor import Tensor, _result

__all__ = ["rms_norm", "silu", "swiglu", "rope", "rope_tables"]


def rms_norm(x, weight=None, eps: float = 1e-6) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last axis (no centring, no bias).

    Shapes: x (..., D), weight (D,) or None -> (..., D). Hugging Face's LlamaRMSNorm.

    >>> import numpy as np
    >>> from tinylora import Tensor
    >>> x = Tensor(np.array([[1.0, -1.0]], dtype=np.float32))  # host-ok (example input)
    >>> rms_norm(x, Tensor(np.array([2.0, 1.0], dtype=np.float32)), eps=0.0).data  # host-ok (example input)
    array([[ 2., -1.]], dtype=float32)
    """
    x = tensor_arg(x, "x", "rms_norm")
    weight = None if weight is None else tensor_arg(weight, "weight", "rms_norm")
    xp = same_device("rms_norm", x=x, weight=weight)
    check_real("eps", eps, low=0.0, where="rms_norm")
    if x.ndim < 1 or x.dtype.kind != "f":
        raise ValueError(f"rms_norm: x must be a floating tensor of shape (..., D), got {x.shape} {x.dtype}")
    if weight is not None and weight.shape != x.shape[-1:]:
        raise ValueError(f"rms_norm: weight shape {weight.shape} must be (D,) = {x.shape[-1:]} "
                         f"for x of shape {x.shape}")
    a, D = x.data, x.shape[-1]
    # Row sums of products by einsum: no (..., D) temporary, ~4x faster than (a * a).mean(axis=-1).
    rstd = 1.0 / xp.sqrt(xp.einsum("...i,...i->...", a, a)[..., None] / D + eps)  # (..., 1)
    xhat = a * rstd  # (..., D), saved for backward
    out = xhat if weight is None else xhat * weight.data

    def backward(g):  # dx = rstd * (gh - xhat * mean(gh * xhat)), gh = g * weight
        gw = gx = None
        gh = g if weight is None else g * weight.data  # (..., D)
        if weight is not None and weight.requires_grad:
            gw = xp.einsum("ni,ni->i", g.reshape(-1, D), xhat.reshape(-1, D))  # (D,): summed over rows
        if x.requires_grad:
            mean_ghx = xp.einsum("...i,...i->...", gh, xhat)[..., None] / D  # (..., 1): mean(gh * xhat)
            gx = xhat * mean_ghx  # (..., D), a new array
            xp.subtract(gh, gx, out=gx)
            gx *= rstd
        return (gx,) if weight is None else (gx, gw)
    return _result(out, (x,) if weight is None else (x, weight), backward)


def _sigmoid(a, xp):
    """1 / (1 + e^-a) from e = e^-|a|, which never overflows: 1 / (1 + e) for a >= 0, e / (1 + e) below.
    One exp, where exp(-logaddexp(0, -a)) took three transcendentals; in place on the arrays it makes.
    The numerator is max(e, a >= 0): True counts as 1 and e <= 1. A where() on the sign was ~10x
    slower, as it branches on every element."""
    e = xp.abs(a)                    # (...), a new array
    xp.negative(e, out=e)
    xp.exp(e, out=e)                 # e^-|a|, in (0, 1]
    s = xp.maximum(e, a >= 0)        # (...), the numerator: 1 for a >= 0, e below
    e += 1.0
    s /= e
    return s


def silu(x) -> Tensor:
    """``x * sigmoid(x)`` (also called swish). Shapes: any -> same.

    >>> import numpy as np
    >>> from tinylora import Tensor
    >>> silu(Tensor(np.array([-1.0, 0.0, 1.0], dtype=np.float32))).data.round(4)  # host-ok (example input)
    array([-0.2689,  0.    ,  0.7311], dtype=float32)
    """
    x = float_tensor(tensor_arg(x, "x", "silu"), "x", "silu")
    a = x.data
    s = _sigmoid(a, x.xp)

    def backward(g):  # silu'(a) = s (1 + a (1 - s))
        grad = 1.0 - s
        grad *= a
        grad += 1.0
        grad *= s
        grad *= g
        return (grad,)
    return _result(a * s, (x,), backward)


def swiglu(gate, up) -> Tensor:
    """The Llama MLP's activation in one op: ``silu(gate) * up``.

    Shapes: gate (..., F), up (..., F) -> (..., F). The plain formula is ``silu(gate) * up``
    with two ops; fused, only the sigmoid is kept for backward.

    >>> import numpy as np
    >>> from tinylora import Tensor
    >>> g = Tensor(np.array([1.0], dtype=np.float32))  # host-ok (example input)
    >>> swiglu(g, Tensor(np.array([2.0], dtype=np.float32))).data.round(4)  # host-ok (example input)
    array([1.4621], dtype=float32)
    """
    gate, up = tensor_arg(gate, "gate", "swiglu"), tensor_arg(up, "up", "swiglu")
    xp = same_device("swiglu", gate=gate, up=up)
    float_tensor(gate, "gate", "swiglu"), float_tensor(up, "up", "swiglu")
    if gate.shape != up.shape:
        raise ValueError(f"swiglu: gate {gate.shape} and up {up.shape} must have the same shape")
    a, u = gate.data, up.data
    s = _sigmoid(a, xp)  # (..., F), saved
    act = a * s  # silu(gate)

    def backward(g):
        g_up = g * act if up.requires_grad else None
        g_gate = None
        if gate.requires_grad:  # g * up * silu'(a), silu'(a) = s (1 + a (1 - s)) = s + act (1 - s)
            g_gate = 1.0 - s
            g_gate *= act
            g_gate += s
            g_gate *= u
            g_gate *= g
        return g_gate, g_up
    return _result(act * u, (gate, up), backward)


@functools.lru_cache(maxsize=16)
def _float32_tables(n_positions: int, head_dim: int, theta: float, xp):
    """(n, hd) cos and sin tables in float32, computed the way Hugging Face computes them.

    HF builds the angles in float32 whatever the model's dtype (``inv_freq.float()``), so a
    float64 model sees float32-rounded tables; copying that makes the two agree to rounding
    error in float64 too. Shared by callers, who only read them.
    """
    f32 = xp.float32
    exponent = xp.arange(0, head_dim, 2, dtype=f32) / f32(head_dim)  # (hd/2,)
    inv_freq = (1.0 / xp.float64(theta) ** exponent.astype(xp.float64)).astype(f32)  # (hd/2,)
    angles = xp.arange(n_positions, dtype=f32)[:, None] * inv_freq[None, :]  # (n, hd/2), float32 products
    angles = xp.concatenate([angles, angles], axis=-1)  # (n, hd): rotate-half pairs i with i + hd/2
    wide = angles.astype(xp.float64)
    return xp.cos(wide).astype(f32), xp.sin(wide).astype(f32)


def rope_tables(n_positions: int, head_dim: int, theta: float, dtype, xp, offset: int = 0):
    """cos, sin of shape (n_positions, head_dim) for positions offset .. offset + n_positions - 1.

    >>> import numpy as np
    >>> cos, sin = rope_tables(3, 4, 10000.0, np.float32, np)
    >>> cos.shape, float(cos[0, 0]), float(sin[0, 0])
    ((3, 4), 1.0, 0.0)
    """
    total = 64
    while total < offset + n_positions:  # round up: a decode step reuses the table of its block
        total *= 2
    cos, sin = _float32_tables(total, head_dim, float(theta), xp)
    end = offset + n_positions
    return cos[offset:end].astype(dtype, copy=False), sin[offset:end].astype(dtype, copy=False)


def _rotate_half(a, xp):
    half = a.shape[-1] // 2
    return xp.concatenate([-a[..., half:], a[..., :half]], axis=-1)  # (x1, x2) -> (-x2, x1)


def _rotate_half_transposed(a, xp):
    half = a.shape[-1] // 2
    return xp.concatenate([a[..., half:], -a[..., :half]], axis=-1)  # (u1, u2) -> (u2, -u1)


def rope(x, offset: int = 0, theta: float = 10000.0) -> Tensor:
    """Rotary position embedding, Hugging Face's rotate-half convention: ``x cos + rotate_half(x) sin``.

    Shapes: x (B, H, T, hd) with hd even -> (B, H, T, hd). Position t of the T is ``offset + t``
    (``offset`` is the number of tokens already in a KV cache). Channel i is rotated with channel
    i + hd/2 by the angle ``position * theta^(-2i/hd)``; the backward rotates back by the same angle.

    >>> import numpy as np
    >>> from tinylora import Tensor
    >>> x = Tensor(np.ones((1, 1, 2, 2), dtype=np.float32))  # host-ok (example input)
    >>> rope(x).data[0, 0].round(4)  # position 0 is unchanged; position 1 turns by 1 radian
    array([[ 1.    ,  1.    ],
           [-0.3012,  1.3818]], dtype=float32)
    """
    x = tensor_arg(x, "x", "rope")
    check_int("offset", offset, low=0, where="rope")
    check_real("theta", theta, low=0.0, low_inclusive=False, where="rope")
    if x.ndim != 4 or x.shape[-1] % 2 or x.dtype.kind != "f":
        raise ValueError(f"rope: x must be a floating (B, heads, T, head_dim) tensor with an even "
                         f"head_dim, got shape {x.shape} and dtype {x.dtype}")
    xp = x.xp
    cos, sin = rope_tables(x.shape[2], x.shape[3], theta, x.dtype, xp, offset)  # (T, hd) each
    out = x.data * cos  # (B, H, T, hd), a new array
    out += _rotate_half(x.data, xp) * sin

    def backward(g):  # the transpose of the rotation: g cos + rotate_half^T(g sin)
        grad = g * cos
        grad += _rotate_half_transposed(g * sin, xp)
        return (grad,)
    return _result(out, (x,), backward)
