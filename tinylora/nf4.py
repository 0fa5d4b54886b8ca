"""NF4, the 4-bit NormalFloat of QLoRA (Dettmers et al., 2023, arXiv:2305.14314): a weight as 16 levels.

A weight (out, in) is cut, row by row, into blocks of ``block_size`` consecutive values. Each block
keeps its absolute maximum ``absmax`` (float32) and, for each value, the index (0..15) of the nearest
of the 16 NF4 levels to ``value / absmax``; the value comes back as ``NF4_LEVELS[code] * absmax``.
The levels are quantiles of a standard normal scaled into [-1, 1] (the paper's appendix lists them),
so each of the 16 codes is used about equally often by normally distributed weights, and exact zero
is a level. Two codes share a byte: element ``2j`` in the low nibble, ``2j + 1`` in the high nibble.

Bytes for a (out, in) weight: ``out * in / 2`` of codes plus ``out * in / block_size * 4`` of scales,
4.5 bits a weight at ``block_size = 64`` instead of float32's 32. (QLoRA also quantizes the scales
themselves, "double quantization", to 8 bits: 4.127 bits a weight; tinylora keeps them float32.)

>>> import numpy as np
>>> w = np.array([[0.0, 0.5, -1.0, 2.0]], dtype=np.float32)
>>> q = quantize_nf4(w, block_size=4)              # one block, absmax 2
>>> q.dequantize()                                  # 0.25 -> level 0.2461, -0.5 -> level -0.5251
array([[ 0.       ,  0.4922246, -1.0501461,  2.       ]], dtype=float32)
>>> q.nbytes                                        # 2 bytes of codes + one float32 scale
6
"""
from __future__ import annotations

import numpy as np

from ._validate import check_int
from .backend import get_array_module
from .block_weight import BlockWeight

__all__ = ["NF4_LEVELS", "NF4Weight", "quantize_nf4", "nf4_nbytes"]

# The 16 NF4 levels, as printed in QLoRA's Appendix E (arXiv:2305.14314).
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
_MIDPOINTS = (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2          # (15,): the borders between levels
# Byte b -> the values of its two codes, (256, 2): one lookup decodes a whole byte.
_BYTE_PAIRS = np.stack([NF4_LEVELS[np.arange(256) & 0x0F], NF4_LEVELS[np.arange(256) >> 4]], axis=1)
QUANTIZE_ROWS = 1024  # rows quantized at a time, so no float temporary is the size of the whole weight


def nf4_nbytes(out_features: int, in_features: int, block_size: int = 64) -> int:
    """Bytes of a (out, in) weight in NF4: codes (two a byte) plus one float32 absmax per block.

    >>> nf4_nbytes(576, 576)       # 576·576/2 + 576·9·4
    186624
    """
    return out_features * in_features // 2 + out_features * (in_features // block_size) * 4


def check_block_size(block_size, in_features: int, where: str) -> int:
    """An even block size that divides ``in_features`` (the blocks run along each row)."""
    block_size = check_int("block_size", block_size, low=2, where=where)
    if block_size % 2 or in_features % block_size:
        raise ValueError(f"{where}: block_size={block_size} must be even and divide "
                         f"in_features={in_features} (blocks run along each row); try 64 or 32")
    return block_size


class NF4Weight(BlockWeight):
    """A frozen (out, in) weight held as NF4: ``codes`` (out, in/2) uint8, ``absmax`` (out, in/block) float32.

    It is not a Parameter (see ``tinylora.block_weight``): ``dequantize(rows)`` rebuilds a slice of rows,
    ``lookup(ids)`` the rows an embedding needs. ``dtype`` is the dtype it dequantizes to (float32).
    """

    method, label = "nf4", "4-bit NF4"

    def __init__(self, codes, absmax, block_size: int, dtype=np.float32):
        super().__init__((codes.shape[0], codes.shape[1] * 2), block_size, dtype)    # (out, in)
        self.codes, self.absmax = codes, absmax

    arrays = property(lambda self: (self.codes, self.absmax))

    def decode(self, index, dtype):
        return decode(self.codes[index], self.absmax[index], self.block_size, dtype)


def decode(codes, absmax, block_size: int, dtype):
    """codes (..., in/2) uint8 and absmax (..., in/block) -> the values (..., in) of ``dtype``."""
    xp = get_array_module(codes)
    pairs = xp.asarray(_BYTE_PAIRS.astype(dtype, copy=False))               # (256, 2)
    values = pairs[codes]                                                  # (..., in/2, 2)
    blocks = values.reshape(absmax.shape + (block_size,))                  # (..., in/block, block)
    blocks *= absmax.astype(dtype, copy=False)[..., None]
    return blocks.reshape(codes.shape[:-1] + (codes.shape[-1] * 2,))       # (..., in)


def encode(weight, block_size: int):
    """weight (rows, in) -> codes (rows, in/2) uint8, absmax (rows, in/block) float32."""
    xp = get_array_module(weight)
    rows, n_in = weight.shape
    blocks = weight.astype(np.float32, copy=False).reshape(rows, n_in // block_size, block_size)
    absmax = xp.abs(blocks).max(axis=-1)                                   # (rows, in/block)
    scaled = blocks / xp.where(absmax > 0, absmax, 1)[..., None]          # (rows, in/block, block) in [-1, 1]
    q = xp.searchsorted(xp.asarray(_MIDPOINTS), scaled.reshape(rows, n_in)).astype(np.uint8)  # nearest level
    codes = q[:, 0::2] + q[:, 1::2] * 16                                    # (rows, in/2): odd ones high
    return codes.astype(np.uint8), absmax.astype(np.float32)


def quantize_nf4(weight, block_size: int = 64) -> NF4Weight:
    """A float (out, in) array (host or device) -> its ``NF4Weight`` on the same device, in chunks of rows.

    Raises ValueError unless the weight is 2-D, finite, and ``block_size`` is even and divides ``in``.
    """
    xp = get_array_module(weight)
    if getattr(weight, "ndim", None) != 2 or getattr(weight, "dtype", np.dtype(object)).kind != "f":
        got = f"{getattr(weight, 'dtype', type(weight))} of shape {getattr(weight, 'shape', None)}"
        raise ValueError(f"quantize_nf4: weight must be a 2-D float array (out, in), got {got}")
    block_size = check_block_size(block_size, weight.shape[1], "quantize_nf4")
    if not bool(xp.isfinite(weight).all()):
        raise ValueError("quantize_nf4: weight holds NaN or inf; a block's absmax would be meaningless")
    parts = [encode(weight[i:i + QUANTIZE_ROWS], block_size)
             for i in range(0, weight.shape[0], QUANTIZE_ROWS)]
    codes = xp.concatenate([c for c, _ in parts], axis=0)                   # (out, in/2)
    absmax = xp.concatenate([a for _, a in parts], axis=0)                  # (out, in/block)
    return NF4Weight(codes, absmax, block_size, dtype=weight.dtype)
