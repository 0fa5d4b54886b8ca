"""Ops that choose or join elements, each with its backward: ``where``, ``concat``, ``stack``.

``tinylora.functional`` re-exports them, so ``F.where`` and ``F.concat`` work as before.

>>> import numpy as np
>>> from tinylora import Tensor
>>> a = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)  # host-ok (example input)
>>> concat([a, a], axis=1).shape
(2, 6)
"""
from __future__ import annotations

import itertools

from ._op_checks import check_axis, same_device, tensor_arg, tensor_list
from .backend import device_of
from .tensor import Tensor, _result, unbroadcast

__all__ = ["where", "concat", "stack"]


def where(cond, a, b) -> Tensor:
    """Elementwise ``a if cond else b``, with broadcasting.

    Shapes: cond, a and b broadcast together. ``cond`` is a bool array or Tensor; ``a`` and ``b``
    are Tensors or Python scalars (at least one a Tensor; a scalar takes the other's dtype).

    >>> import numpy as np
    >>> from tinylora import Tensor
    >>> a = Tensor(np.array([1.0, 2.0], dtype=np.float32))  # host-ok (example input)
    >>> where(np.array([True, False]), a, 0.0).data  # host-ok (example input)
    array([1., 0.], dtype=float32)
    """
    if isinstance(a, Tensor):
        b = a._lift(b)  # a scalar takes a's dtype; another device raises
    elif isinstance(b, Tensor):
        a = b._lift(a)
    else:
        raise TypeError("where: at least one of a and b must be a Tensor")
    xp = same_device("where", a=a, b=b)
    c = cond.data if isinstance(cond, Tensor) else cond
    if a.device == "cpu" and device_of(c) != "cpu":
        raise ValueError(f"where: cond is on {device_of(c)} but a and b are on cpu")
    c = xp.asarray(c)  # a host mask moves to the data's device
    if c.dtype.kind != "b":
        raise TypeError(f"where: cond must be a bool array, got dtype {c.dtype}")
    try:
        out = xp.where(c, a.data, b.data)
    except ValueError:
        raise ValueError(f"where: shapes do not broadcast: cond {c.shape}, a {a.shape}, "
                         f"b {b.shape}") from None

    def backward(g):
        ga = unbroadcast(xp.where(c, g, 0), a.shape) if a.requires_grad else None
        gb = unbroadcast(xp.where(c, 0, g), b.shape) if b.requires_grad else None
        return ga, gb
    return _result(out, (a, b), backward)


def _check_joinable(tensors, fn: str):
    tensors = [tensor_arg(t, f"tensors[{i}]", fn) for i, t in enumerate(tensor_list(tensors, fn))]
    if not tensors:
        raise ValueError(f"{fn}: needs at least one tensor, got an empty sequence")
    xp = same_device(fn, **{f"tensors[{i}]": t for i, t in enumerate(tensors)})
    return tensors, xp


def concat(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis.

    Shapes: each (..., n_i, ...) equal except along ``axis`` -> (..., sum n_i, ...).

    >>> import numpy as np
    >>> from tinylora import Tensor
    >>> a = Tensor(np.zeros((1, 2), dtype=np.float32))  # host-ok (example input)
    >>> b = Tensor(np.ones((2, 2), dtype=np.float32))  # host-ok (example input)
    >>> concat([a, b]).shape
    (3, 2)
    """
    tensors, xp = _check_joinable(tensors, "concat")
    first = tensors[0]
    axis = check_axis(axis, first.ndim, "concat")
    for i, t in enumerate(tensors):
        outside = [(n, m) for d, (n, m) in enumerate(zip(t.shape, first.shape)) if d != axis]
        if t.ndim != first.ndim or any(n != m for n, m in outside):
            raise ValueError(f"concat: tensors[{i}] has shape {t.shape}, which does not match tensors[0] "
                             f"{first.shape} outside axis {axis}")
    out = xp.concatenate([t.data for t in tensors], axis=axis)
    ends = list(itertools.accumulate(t.shape[axis] for t in tensors))

    def backward(g):
        lead = (slice(None),) * axis
        return tuple(g[lead + (slice(end - t.shape[axis], end),)] if t.requires_grad else None
                     for t, end in zip(tensors, ends))
    return _result(out, tuple(tensors), backward)


def stack(tensors, axis: int = 0) -> Tensor:
    """Join same-shape tensors along a new axis.

    Shapes: n tensors of shape s -> s with n inserted at ``axis``.

    >>> import numpy as np
    >>> from tinylora import Tensor
    >>> a = Tensor(np.zeros(3, dtype=np.float32))  # host-ok (example input)
    >>> stack([a, a], axis=1).shape
    (3, 2)
    """
    tensors, xp = _check_joinable(tensors, "stack")
    first = tensors[0]
    axis = check_axis(axis, first.ndim + 1, "stack")
    for i, t in enumerate(tensors):
        if t.shape != first.shape:
            raise ValueError(f"stack: tensors[{i}] has shape {t.shape} but tensors[0] has {first.shape}; "
                             "stack needs equal shapes")
    out = xp.stack([t.data for t in tensors], axis=axis)

    def backward(g):
        lead = (slice(None),) * axis
        return tuple(g[lead + (i,)] if t.requires_grad else None for i, t in enumerate(tensors))
    return _result(out, tuple(tensors), backward)
