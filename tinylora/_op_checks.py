"""Checks shared by the ops in ``functional`` and ``array_ops``: Tensors, devices, axes, indices.

They raise before any work is done, with the op's name, the argument and what was expected.
"""
from __future__ import annotations

import numbers

from .backend import device_of
from .tensor import Tensor


def tensor_arg(x, name: str, fn: str) -> Tensor:
    """A Tensor as is; array data wrapped in a (non-grad) Tensor."""
    if isinstance(x, Tensor):
        return x
    if x is None:
        raise TypeError(f"{fn}: {name} must be a Tensor, got None")
    return Tensor(x)


def same_device(fn: str, **tensors) -> object:
    """The array module shared by all the named tensors (None entries skipped); else a ValueError."""
    named = [(name, t) for name, t in tensors.items() if t is not None]
    first_name, first = named[0]
    xp = first.xp
    for name, t in named[1:]:
        if t.xp is not xp:
            raise ValueError(f"{fn}: expected all tensors on one device, but {first_name} is on "
                             f"{first.device} and {name} is on {t.device}; "
                             f"move one with .to({first.device!r})")
    return xp


def check_axis(axis, ndim: int, fn: str) -> int:
    if not isinstance(axis, numbers.Integral) or not -ndim <= axis < max(ndim, 1):
        raise ValueError(f"{fn}: axis {axis!r} is out of range for a tensor with {ndim} dimensions")
    return int(axis) % max(ndim, 1)


def int_array(values, like: Tensor, name: str, fn: str):
    """Integer indices (array, list or Tensor) on ``like``'s device; host indices are moved over."""
    if isinstance(values, Tensor):
        values = values.data
    if like.device == "cpu" and device_of(values) != "cpu":
        raise ValueError(f"{fn}: {name} are on {device_of(values)} but the data is on cpu; "
                         "move them with tinylora.asnumpy")
    values = like.xp.asarray(values)  # host ids move to the data's device, as in Tensor indexing
    if values.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {name} must be an integer array, got dtype {values.dtype}")
    return values


def check_range(ids, size: int, name: str, fn: str, ignore=None) -> None:
    """ValueError naming the first index outside [0, size) (positions equal to ``ignore`` excepted)."""
    bad = (ids < 0) | (ids >= size)
    if ignore is not None:
        bad &= ids != ignore
    if bool(bad.any()):  # one device-to-host sync, a single bool
        value = int(ids[bad].reshape(-1)[0].item())
        raise ValueError(f"{fn}: {name} {value} is out of range; valid values are [0, {size})")


def float_tensor(x: Tensor, name: str, fn: str) -> Tensor:
    """``x`` itself when its dtype is floating; a TypeError naming it otherwise (no silent float64)."""
    if x.dtype.kind != "f":
        raise TypeError(f"{fn}: {name} must be a floating-point tensor (float16/32/64), got dtype {x.dtype}; "
                        f"convert it first, e.g. Tensor(data, dtype=np.float32)")
    return x


def nonempty_axis(x: Tensor, axis: int, name: str, fn: str) -> None:
    """A ValueError when ``x`` has length 0 along ``axis`` (a softmax or a max over nothing)."""
    if x.shape[axis] == 0:
        raise ValueError(f"{fn}: {name} has shape {x.shape}, with length 0 along axis {axis}; "
                         "there is nothing to normalise over")


def tensor_list(tensors, fn: str) -> list:
    """A list or tuple of tensors (a single Tensor is refused: iterating it would walk its rows)."""
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{fn}: tensors must be a list or tuple of Tensors, got {type(tensors).__name__}")
    return list(tensors)
