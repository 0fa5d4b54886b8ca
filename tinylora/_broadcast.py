"""Shape helpers of the engine: undoing broadcasting in backward, reduction axes, batched matmul.

``tinylora.tensor`` re-exports ``unbroadcast``, the one a reader meets in every backward.

>>> import numpy as np
>>> unbroadcast(np.ones((2, 3)), (3,))
array([2., 2., 2.])
"""
from __future__ import annotations

import numbers

from .backend import get_array_module

__all__ = ["unbroadcast"]


def unbroadcast(g, shape):
    """Sum a gradient back down to ``shape``, undoing NumPy broadcasting."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def matmul(x, w):
    """``x @ w``; a 2-D ``w`` meets all of x's rows in one GEMM (NumPy would loop over the batch)."""
    if w.ndim == 2 and x.ndim > 2:
        return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])  # (..., m, n)
    return x @ w


def normalize_axes(axis, shape, fn: str, nonempty: bool = False) -> tuple:
    """``axis`` (None, an int or a tuple of ints) as a tuple of non-negative axes of ``shape``.

    With ``nonempty``, an axis of length 0 raises (a mean or a max over nothing is undefined).
    """
    ndim = len(shape)
    if axis is None:  # the common case, kept fast
        if nonempty and 0 in shape:
            raise ValueError(f"{fn}: cannot reduce over an empty axis: the tensor has shape {tuple(shape)} "
                             "and axis=None")
        return tuple(range(ndim))
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        axes = (axis,)
    elif isinstance(axis, (tuple, list)) and all(isinstance(a, numbers.Integral) and not isinstance(a, bool)
                                                 for a in axis):
        axes = tuple(axis)
    else:
        raise TypeError(f"{fn}: axis must be None, an int or a tuple of ints, got {axis!r}")
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{fn}: axis {a} is out of range for a tensor with {ndim} dimensions")
    axes = tuple(a % max(ndim, 1) for a in axes)
    if nonempty and any(shape[a] == 0 for a in axes if a < ndim):
        raise ValueError(f"{fn}: cannot reduce over an empty axis: the tensor has shape {tuple(shape)} "
                         f"and axis={axis!r}")
    return axes


def expand_reduced(g, axes, shape, keepdims):
    """Broadcast the gradient of a reduction back to the input's shape."""
    if not keepdims:
        g = g.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    return get_array_module(g).broadcast_to(g, shape)
