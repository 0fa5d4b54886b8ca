"""A frozen weight held in GGUF's own blocks: Q4_1 (4-bit codes, a scale and a minimum) and Q8_0 (int8 codes).

Each row is cut into blocks of 32 values, as in llama.cpp's files (``tinylora.quant`` lists the byte
layouts). The arrays below are a block's fields, one array per field:

====== ====================================================== ===================== ==============
format arrays (out, in/32 blocks per row)                     value of element j    bits a weight
====== ====================================================== ===================== ==============
Q4_1   ``d``, ``m`` float16; ``qs`` (..., 16) uint8            ``d * q[j] + m``      5
Q8_0   ``d`` float16; ``qs`` (..., 32) int8                    ``d * qs[j]``         8.5
====== ====================================================== ===================== ==============

Byte ``i`` of a Q4_1 block's ``qs`` holds element ``i`` in its low nibble and element ``i + 16`` in its
high one, exactly as the file stores it. Encoding follows llama.cpp's reference rule: Q4_1 takes the
block's minimum as ``m`` and ``(max - min) / 15`` as ``d``, and rounds ``(x - m) / d`` to the nearest
code; Q8_0 takes ``max|x| / 127`` as ``d`` and rounds ``x / d``. A value that came out of such a block
goes back into the same block: re-encoding the float32 weights that tinylora read from a Q4_1 GGUF file
gives the file's ``d``, ``m`` and ``qs`` byte for byte, so a base held this way has exactly the float32
base's values (``tests/test_qlora.py``).

>>> import numpy as np
>>> w = np.linspace(-1, 2, 32, dtype=np.float32)[None]      # one block from -1 to 2: d = 0.2, m = -1
>>> q = quantize_q4_1(w)
>>> float(q.m[0, 0]), round(float(q.d[0, 0]), 4), q.nbytes  # 2 + 2 bytes of scales, 16 of codes
(-1.0, 0.2, 20)
>>> bool(np.abs(q.dequantize() - w).max() <= q.d[0, 0] / 2)  # within half a step
True
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module
from .block_weight import BlockWeight

__all__ = ["GGUF_BLOCK", "Q4_1Weight", "Q8_0Weight", "quantize_q4_1", "quantize_q8_0"]

GGUF_BLOCK = 32       # values a block, in every GGUF block format
QUANTIZE_ROWS = 1024  # rows encoded at a time, so no float temporary is the size of the whole weight


class Q4_1Weight(BlockWeight):
    """A frozen (out, in) weight in Q4_1: ``d``, ``m`` (out, in/32) float16, ``qs`` (out, in/32, 16) uint8."""

    method, label = "q4_1", "4-bit Q4_1"

    def __init__(self, d, m, qs, dtype=np.float32):
        super().__init__((qs.shape[0], qs.shape[1] * GGUF_BLOCK), GGUF_BLOCK, dtype)   # (out, in)
        self.d, self.m, self.qs = d, m, qs

    arrays = property(lambda self: (self.qs, self.d, self.m))

    def decode(self, index, dtype):
        qs = self.qs[index]                                                  # (..., nb, 16)
        xp = get_array_module(qs)
        q = xp.concatenate([qs % 16, qs // 16], axis=-1)                     # (..., nb, 32): 0..15, 16..31
        w = q.astype(dtype)                                                  # (..., nb, 32)
        w *= self.d[index].astype(dtype)[..., None]
        w += self.m[index].astype(dtype)[..., None]
        return w.reshape(qs.shape[:-2] + (-1,))                              # (..., in)


class Q8_0Weight(BlockWeight):
    """A frozen (out, in) weight in Q8_0: ``d`` (out, in/32) float16 and ``qs`` (out, in/32, 32) int8."""

    method, label = "q8_0", "8-bit Q8_0"

    def __init__(self, d, qs, dtype=np.float32):
        super().__init__((qs.shape[0], qs.shape[1] * GGUF_BLOCK), GGUF_BLOCK, dtype)   # (out, in)
        self.d, self.qs = d, qs

    arrays = property(lambda self: (self.qs, self.d))

    def decode(self, index, dtype):
        qs = self.qs[index]                                                  # (..., nb, 32)
        w = qs.astype(dtype)
        w *= self.d[index].astype(dtype)[..., None]
        return w.reshape(qs.shape[:-2] + (-1,))                              # (..., in)


def _check_weight(weight, where: str):
    xp = get_array_module(weight)
    if getattr(weight, "ndim", None) != 2 or getattr(weight, "dtype", np.dtype(object)).kind != "f":
        got = f"{getattr(weight, 'dtype', type(weight))} of shape {getattr(weight, 'shape', None)}"
        raise ValueError(f"{where}: weight must be a 2-D float array (out, in), got {got}")
    if weight.shape[1] % GGUF_BLOCK:
        raise ValueError(f"{where}: in_features={weight.shape[1]} must be a multiple of {GGUF_BLOCK} "
                         "(GGUF's blocks hold 32 values of a row)")
    if not bool(xp.isfinite(weight).all()):
        raise ValueError(f"{where}: weight holds NaN or inf; a block's scale would be meaningless")
    return xp


def _blocks(weight):
    rows = weight.shape[0]
    return weight.astype(np.float32, copy=False).reshape(rows, -1, GGUF_BLOCK)   # (rows, nb, 32)


def _half(xp, scale, where: str):
    half = scale.astype(np.float16)
    if not bool(xp.isfinite(half).all()):
        raise ValueError(f"{where}: a block's scale exceeds float16's range (65504); the weight is too "
                         "large for a GGUF block format")
    return half


def _encode_q4_1(weight):
    xp = get_array_module(weight)
    blocks = _blocks(weight)                                                 # (rows, nb, 32)
    low, high = blocks.min(axis=-1), blocks.max(axis=-1)                     # (rows, nb)
    d = (high - low) / 15
    inverse = xp.where(d > 0, 1 / xp.where(d > 0, d, 1), 0).astype(np.float32)
    q = xp.floor((blocks - low[..., None]) * inverse[..., None] + 0.5)        # (rows, nb, 32) in 0..15
    q = xp.minimum(q, 15).astype(np.uint8)
    qs = q[..., :16] + q[..., 16:] * 16                                      # (rows, nb, 16): 16..31 high
    return d, low, qs


def _encode_q8_0(weight):
    xp = get_array_module(weight)
    blocks = _blocks(weight)                                                 # (rows, nb, 32)
    d = xp.abs(blocks).max(axis=-1) / 127                                    # (rows, nb)
    inverse = xp.where(d > 0, 1 / xp.where(d > 0, d, 1), 0).astype(np.float32)
    v = blocks * inverse[..., None]                                          # (rows, nb, 32) in -127..127
    qs = (xp.sign(v) * xp.floor(xp.abs(v) + 0.5)).astype(np.int8)            # round half away from zero
    return d, qs


def quantize_q4_1(weight) -> Q4_1Weight:
    """A float (out, in) array (host or device, ``in`` a multiple of 32) -> its ``Q4_1Weight``, on its device.

    Raises ValueError unless the weight is 2-D, finite, and its blocks' scales fit in float16.
    """
    xp = _check_weight(weight, "quantize_q4_1")
    parts = [_encode_q4_1(weight[i:i + QUANTIZE_ROWS]) for i in range(0, weight.shape[0], QUANTIZE_ROWS)]
    d, m, qs = (xp.concatenate([p[k] for p in parts], axis=0) for k in range(3))
    return Q4_1Weight(_half(xp, d, "quantize_q4_1"), _half(xp, m, "quantize_q4_1"), qs, dtype=weight.dtype)


def quantize_q8_0(weight) -> Q8_0Weight:
    """A float (out, in) array (host or device, ``in`` a multiple of 32) -> its ``Q8_0Weight``, on its
    device."""
    xp = _check_weight(weight, "quantize_q8_0")
    parts = [_encode_q8_0(weight[i:i + QUANTIZE_ROWS]) for i in range(0, weight.shape[0], QUANTIZE_ROWS)]
    d, qs = (xp.concatenate([p[k] for p in parts], axis=0) for k in range(2))
    return Q8_0Weight(_half(xp, d, "quantize_q8_0"), qs, dtype=weight.dtype)
