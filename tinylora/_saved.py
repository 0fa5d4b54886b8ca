"""What a graph saved for backward, and how a change to it after the forward pass is caught.

Each op node keeps a ``Saved`` record of the version of every input it used; ``backward()``
compares them with the inputs' versions now (and the node's own, which starts at 0), so a tensor
changed through ``.data = ...`` or an in-place method (``copy_``, ``add_``, ``mul_``, ``zero_``)
since the op ran raises a RuntimeError instead of giving a wrong gradient.

A raw write such as ``t.data[0] = 1`` changes no version, so it is stopped at once instead:
while a live node saved ``t`` (``t._saved_by > 0``: each node that used ``t``, and ``t``'s own
node), ``t.data`` is a read-only view of the array and NumPy refuses the write. Nothing is
flipped on the array itself (that costs more than a small op), and the view is made once per
graph. When ``backward()`` releases the graph, or the graph is dropped, ``t.data`` is the array
again. Device (CuPy) arrays have no read-only views: there, versions alone are checked.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Saved", "save", "read_only", "check_versions", "check_grad"]


class Saved:
    """The record of one op node: its parents and the version of each when the op ran."""

    __slots__ = ("parents", "versions")

    def __init__(self, parents, versions):
        self.parents, self.versions = parents, versions

    def __del__(self):  # released by backward(), or dropped with the graph
        for p in self.parents:
            p._saved_by -= 1


def save(parents) -> Saved:
    """The record of a node made from ``parents``; each parent counts one more live node that saved it."""
    versions = []
    for p in parents:
        versions.append(p._version)
        p._saved_by += 1
    return Saved(parents, versions)


def read_only(t):
    """A read-only view of ``t``'s host array (made once, kept until the array changes)."""
    a = t._data
    cached = t._view
    if cached is not None and cached[0] is a:
        return cached[1]
    if type(a) is not np.ndarray:  # device arrays (and NumPy subclasses) are handed out as they are
        return a
    view = a.view()
    view.setflags(write=False)
    t._view = (a, view)
    return view


def stale_input_message(node, index: int, tensor, saved_version: int) -> str:
    role = "its output" if tensor is node else f"input {index}"
    return (f"backward(): {role} of {node.op_name}, a tensor of shape {tuple(tensor.shape)} "
            f"({tensor.dtype}), was changed in place after {node.op_name} used it: it is at version "
            f"{tensor.version}, but {node.op_name} saved version {saved_version}. Run the forward pass "
            "again after changing it (an optimizer step or a .data assignment between a forward "
            "pass and its backward() is the usual cause).")


def check_versions(node) -> None:
    """RuntimeError when a tensor that ``node``'s op used changed in place since the op ran."""
    saved = node._saved
    if saved is None:
        return
    if node._version:
        raise RuntimeError(stale_input_message(node, -1, node, 0))
    for i, (p, version) in enumerate(zip(node._parents, saved.versions)):
        if p._version != version:
            raise RuntimeError(stale_input_message(node, i, p, version))


def check_grad(t, grad) -> None:
    """A ``.grad`` assignment must match the tensor's array module, shape and dtype (as in PyTorch)."""
    if not (hasattr(grad, "dtype") and hasattr(grad, "shape")) or hasattr(grad, "requires_grad"):
        raise TypeError(f"Tensor.grad must be None or an array, got {type(grad).__name__}")
    if type(grad) is not type(t._data) and t.device != ("cpu" if isinstance(grad, np.ndarray) else "cuda"):
        raise ValueError(f"Tensor.grad must be on the tensor's device ({t.device}), got a "
                         f"{type(grad).__name__}")
    if tuple(grad.shape) != tuple(t.shape):
        raise ValueError(f"Tensor.grad must have the tensor's shape {tuple(t.shape)}, "
                         f"got {tuple(grad.shape)}")
    if grad.dtype != t.dtype:
        raise TypeError(f"Tensor.grad must have the tensor's dtype {t.dtype}, got {grad.dtype}; "
                        f"cast it first (grad.astype(np.{t.dtype}))")


def tensor_state(t) -> dict:
    """``Tensor.__getstate__``: a copy or pickle is saved by no node (its counts would never drop)."""
    state = dict(t.__dict__)
    state["_saved_by"], state["_view"] = 0, None
    if "_saved" in state:
        state["_saved"] = None
    return state
