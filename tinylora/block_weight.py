"""A frozen weight held in blocks of low-bit codes with per-block scales: what NF4, Q4_1 and Q8_0 share.

A ``BlockWeight`` (out, in) is not a Parameter: it has no gradient, the optimizer never sees it, and
there is no float32 array behind it. Its arrays (codes and scales) are cut along each row into blocks
of ``block_size`` values. ``dequantize(rows)`` rebuilds a slice of rows, ``lookup(ids)`` the rows an
embedding needs; both decode only what they are asked for. Subclasses say how: ``decode(index)``
turns the blocks of the rows that ``index`` selects into float values, and ``arrays`` names the
arrays that hold the weight (their bytes are ``nbytes``).
"""
from __future__ import annotations

import numpy as np

from .backend import device_of, get_array_module

__all__ = ["BlockWeight"]


class BlockWeight:
    """The shared behaviour of a block-quantized (out, in) weight; ``method`` names the format ("nf4")."""

    requires_grad = False
    grad = None
    ndim = 2
    method = "blocks"
    label = "block-quantized"  # for messages: "4-bit NF4"

    def __init__(self, shape, block_size: int, dtype=np.float32):
        self.shape, self.block_size, self.dtype = tuple(shape), int(block_size), np.dtype(dtype)

    @property
    def arrays(self) -> tuple:
        """The arrays that hold the weight (codes and scales)."""
        raise NotImplementedError

    def decode(self, index, dtype):
        """The values of rows ``index`` (a slice, or integer ids of any shape): (..., in) of ``dtype``."""
        raise NotImplementedError

    size = property(lambda self: self.shape[0] * self.shape[1])
    xp = property(lambda self: get_array_module(self.arrays[0]))
    device = property(lambda self: device_of(self.arrays[0]))
    nbytes = property(lambda self: int(sum(a.nbytes for a in self.arrays)))

    @property
    def data(self):
        raise TypeError(f"this {self.shape[0]}x{self.shape[1]} weight is held as {self.label} codes, "
                        "with no float32 array to read or write; merging an adapter, DoRA and PiSSA need "
                        "one: call tinylora.lora.dequantize_base(model) first, or keep the adapter unmerged")

    def __repr__(self):
        return (f"{type(self).__name__}(shape={self.shape}, block_size={self.block_size}, "
                f"nbytes={self.nbytes})")

    def dequantize(self, rows=slice(None), dtype=None):
        """Rows ``rows`` (a slice) decoded to ``dtype`` (default ``self.dtype``): (rows, in)."""
        return self.decode(rows, dtype or self.dtype)

    def lookup(self, ids, dtype=None):
        """The rows ``ids`` (any integer shape) selects, decoded: (..., in); an embedding's forward."""
        return self.decode(ids, dtype or self.dtype)
