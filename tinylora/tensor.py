"""The autograd engine: a Tensor that remembers how it was made, and backward().

Each op computes its result and defines, right beside it, a ``backward(g)`` that maps the
gradient of the result to one gradient per input (``None`` for an input that needs none, so
a frozen weight's gradient is never computed). ``Tensor.backward`` walks the graph in reverse
topological order and *accumulates* gradients (a node used twice receives two contributions).

>>> x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4., 6.], dtype=float32)
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _saved, grad_mode
from ._broadcast import expand_reduced, matmul, normalize_axes, unbroadcast
from .backend import asnumpy, device_of, get_array_module, scatter_add, to_device
from .grad_mode import is_grad_enabled, no_grad  # noqa: F401 (re-exported)


def _to_array(data, dtype):
    """Turn user data into an array; Python floats become float32, as in PyTorch."""
    if isinstance(data, Tensor):
        data = data._data
    if isinstance(data, (str, bytes)):
        raise TypeError(f"Tensor data must be numeric, got a string: {data!r}")
    xp = get_array_module(data)
    from_python = xp is np and not isinstance(data, (np.ndarray, np.generic))
    try:
        array = xp.asarray(data, dtype=dtype)
    except ValueError as err:  # ragged nested lists
        raise ValueError("Tensor data must be a rectangular nested list or an array; "
                         f"got {data!r:.80} ({err})") from None
    if array.dtype.kind not in "biuf":
        raise TypeError("Tensor data must be numeric (bool, int or float); "
                        f"got dtype {array.dtype} from {data!r:.80}")
    if from_python and dtype is None and array.dtype == np.float64:
        array = array.astype(np.float32)
    return array


def _result(data, parents, backward):
    """Wrap an op's output; record the graph only when some input needs a gradient."""
    if data.__class__ is not np.ndarray and isinstance(data, np.generic):
        data = np.asarray(data)  # host-ok: NumPy returns scalars from 0-d ops; a Tensor holds an array
    needs_grad = False
    if grad_mode._enabled:
        for p in parents:
            needs_grad = needs_grad or p.requires_grad
    if not needs_grad:
        return _new_tensor(data)
    out = _new_tensor(data, True, parents, backward)
    out._saved, out._saved_by = _saved.save(parents), 1  # versions to check in backward
    return out


def _new_tensor(data, requires_grad=False, parents=(), backward=None):
    """A Tensor around an array that is already valid (skips ``Tensor.__init__``'s checks)."""
    out = Tensor.__new__(Tensor)
    out._data, out._grad, out._version, out.requires_grad = data, None, 0, requires_grad
    out._parents, out._backward, out._saved_by, out._view = parents, backward, 0, None
    return out


def _released(g):
    raise RuntimeError("backward() through a graph that was already released; pass retain_graph=True "
                       "to the first backward() to call it twice")


class Tensor:
    """An n-dimensional array (NumPy or CuPy) with reverse-mode automatic differentiation."""

    __array_ufunc__ = None  # make `ndarray * Tensor` call Tensor.__rmul__
    __getstate__ = _saved.tensor_state  # copy.deepcopy and pickle

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if not isinstance(requires_grad, (bool, np.bool_)):
            raise TypeError(f"Tensor: requires_grad must be True or False, got {requires_grad!r}")
        self._data, self._version = _to_array(data, dtype), 0
        if requires_grad and self._data.dtype.kind != "f":
            raise TypeError(f"requires_grad=True needs a floating-point tensor, got dtype {self._data.dtype}")
        self.requires_grad = bool(requires_grad)
        self._grad, self._parents, self._backward = None, (), None
        self._saved_by, self._view = 0, None  # live nodes that saved this tensor; its read-only view

    # ---- array facts --------------------------------------------------------------------
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    device = property(lambda self: device_of(self._data))
    xp = property(lambda self: get_array_module(self._data))
    version = property(lambda self: self._version, doc="How many times the data changed in place (an int).")

    @property
    def data(self):
        """The array; a read-only view while a live graph saved this tensor (``t.data[0] = 1`` raises)."""
        return _saved.read_only(self) if self._saved_by else self._data

    @data.setter
    def data(self, value):
        if isinstance(value, Tensor) or not hasattr(value, "dtype") or not hasattr(value, "shape"):
            raise TypeError(f"Tensor.data must be set to an array, got {type(value).__name__}")
        self._data, self._version, self._view = value, self._version + 1, None

    @property
    def grad(self):
        """The accumulated gradient: an array of the tensor's shape, dtype and device, or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            _saved.check_grad(self, value)
        self._grad = value

    def __len__(self):
        return len(self._data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        device = ", device='cuda'" if self.device == "cuda" else ""
        return f"Tensor({asnumpy(self._data)!r}{device}{grad})"

    def item(self):
        return self._data.item()

    def numpy(self) -> np.ndarray:
        """A host NumPy copy of the data."""
        return np.array(asnumpy(self._data), copy=True)  # host-ok

    # ---- the graph, read-only -----------------------------------------------------------
    @property
    def parents(self) -> tuple:
        """The tensors this one was computed from (empty for a leaf, or once backward released it)."""
        return tuple(self._parents)

    @property
    def op_name(self) -> str | None:
        """The name of the function whose backward made this tensor, e.g. ``"__mul__"``; None for a leaf."""
        if self._backward is None or self._backward is _released:
            return None
        return self._backward.__qualname__.split(".<locals>")[0].split(".")[-1]

    @classmethod
    def from_op(cls, data, parents, backward) -> "Tensor":
        """The public way to define an op: wrap its output ``data`` and record how to differentiate it.

        ``backward(g)`` maps the output's gradient ``g`` to one gradient per parent (``None`` for a
        parent that needs none). The graph is recorded only when a parent requires grad.

        >>> def sin(t):
        ...     xp = t.xp
        ...     return Tensor.from_op(xp.sin(t.data), (t,), lambda g: (g * xp.cos(t.data),))
        >>> x = Tensor([0.0, 1.0], requires_grad=True)
        >>> sin(x).sum().backward()
        >>> x.grad.round(4)
        array([1.    , 0.5403], dtype=float32)
        """
        parents = tuple(parents)
        for p in parents:
            if not isinstance(p, Tensor):
                raise TypeError(f"Tensor.from_op: parents must be Tensors, got {type(p).__name__}")
        if not callable(backward):
            raise TypeError(f"Tensor.from_op: backward must be callable, got {type(backward).__name__}")
        return _result(data, parents, backward)

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return _new_tensor(self._data)

    def to(self, device: str) -> "Tensor":
        """A copy on ``"cpu"`` or ``"cuda"`` (a new leaf; requires_grad is kept)."""
        return Tensor(to_device(self._data, device), requires_grad=self.requires_grad)

    # ---- in-place changes: not recorded in the graph; each bumps the version -----------------
    def copy_(self, src) -> "Tensor":
        """Overwrite the values with ``src`` (broadcast, cast to this dtype); returns self."""
        self._data[...] = self._lift(src)._data
        self._version += 1
        return self

    def add_(self, other, alpha: float = 1.0) -> "Tensor":
        """``self += alpha * other`` in place; returns self."""
        other = self._lift(other)._data
        self._data[...] += other if alpha == 1 else other * alpha
        self._version += 1
        return self

    def mul_(self, other) -> "Tensor":
        """``self *= other`` in place; returns self."""
        self._data[...] *= self._lift(other)._data
        self._version += 1
        return self

    zero_ = lambda self: self.mul_(0)  # noqa: E731 (fill with zeros in place; returns self)

    def _lift(self, other) -> "Tensor":
        """Make ``other`` a Tensor on this tensor's device; scalars take this tensor's dtype."""
        if isinstance(other, Tensor):
            if other._data.__class__ is not self._data.__class__ and other.device != self.device:
                raise ValueError(f"expected all tensors on one device, got {self.device} and {other.device}; "
                                 f"move one with .to({self.device!r})")
            return other
        if isinstance(other, numbers.Number):
            data = self._data
            return _new_tensor(self.xp.asarray(other, dtype=data.dtype if data.dtype.kind == "f" else None))
        return self._lift(Tensor(other))

    # ---- elementwise arithmetic (broadcasting) -----------------------------------------
    def __add__(self, other):
        a, b = self, self._lift(other)

        def backward(g):
            return (unbroadcast(g, a.shape) if a.requires_grad else None,
                    unbroadcast(g, b.shape) if b.requires_grad else None)
        return _result(a._data + b._data, (a, b), backward)

    def __mul__(self, other):
        a, b = self, self._lift(other)

        def backward(g):
            return (unbroadcast(g * b._data, a.shape) if a.requires_grad else None,
                    unbroadcast(g * a._data, b.shape) if b.requires_grad else None)
        return _result(a._data * b._data, (a, b), backward)

    def __truediv__(self, other):
        a, b = self, self._lift(other)

        def backward(g):
            return (unbroadcast(g / b._data, a.shape) if a.requires_grad else None,
                    unbroadcast(-g * a._data / (b._data * b._data), b.shape) if b.requires_grad else None)
        return _result(a._data / b._data, (a, b), backward)

    def __pow__(self, exponent):
        if not isinstance(exponent, numbers.Real):
            raise TypeError(f"** takes a real scalar exponent, got {type(exponent).__name__}")
        a = self

        def backward(g):
            return (g * exponent * a._data ** (exponent - 1),)
        return _result(a._data ** exponent, (a,), backward)

    def __neg__(self):
        return _result(-self._data, (self,), lambda g: (-g,))

    def __sub__(self, other):
        a, b = self, self._lift(other)

        def backward(g):
            return (unbroadcast(g, a.shape) if a.requires_grad else None,
                    unbroadcast(-g, b.shape) if b.requires_grad else None)
        return _result(a._data - b._data, (a, b), backward)

    def __rsub__(self, other):
        return self._lift(other) - self

    def __rtruediv__(self, other):
        return self._lift(other) / self

    __radd__ = __add__
    __rmul__ = __mul__

    # ---- matrix product -----------------------------------------------------------------
    def __matmul__(self, other):
        a, b = self, self._lift(other)
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul shape mismatch: {a.shape} @ {b.shape}; both need >= 2 dims and "
                             f"a.shape[-1] ({a.shape[-1] if a.ndim else None}) must equal b.shape[-2]")
        try:
            out = matmul(a._data, b._data)
        except ValueError:
            raise ValueError(f"matmul batch dimensions do not broadcast: {a.shape} @ {b.shape}") from None

        def backward(g):  # g: (..., m, n)
            ga = gb = None
            if a.requires_grad:
                ga = unbroadcast(matmul(g, b._data.swapaxes(-1, -2)), a.shape)  # (..., m, k)
            if b.requires_grad and b.ndim == 2:  # one GEMM over all batch rows
                gb = a._data.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])  # (k, n)
            elif b.requires_grad:
                gb = unbroadcast(a._data.swapaxes(-1, -2) @ g, b.shape)  # (..., k, n)
            return ga, gb
        return _result(out, (a, b), backward)

    def __rmatmul__(self, other):
        return self._lift(other) @ self

    # ---- reductions ---------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        axes, shape = normalize_axes(axis, self.shape, "sum"), self.shape
        return _result(self._data.sum(axis=axes, keepdims=keepdims), (self,),
                       lambda g: (expand_reduced(g, axes, shape, keepdims),))

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis``; an empty axis raises ValueError (there is nothing to average)."""
        axes = normalize_axes(axis, self.shape, "mean", nonempty=True)
        count = int(np.prod([self.shape[a] for a in axes]))  # host-ok: shape arithmetic
        return self.sum(axis=axes, keepdims=keepdims) * (1.0 / count)

    def max(self, axis=None, keepdims=False):
        """Maximum; the gradient is shared equally among tied maxima. An empty axis raises ValueError."""
        axes, a = normalize_axes(axis, self.shape, "max", nonempty=True), self
        top = a._data.max(axis=axes, keepdims=True)

        def backward(g):
            mask = (a._data == top).astype(a.dtype)
            return (expand_reduced(g, axes, a.shape, keepdims) * mask / mask.sum(axis=axes, keepdims=True),)
        out = top if keepdims else top.reshape([n for i, n in enumerate(a.shape) if i not in axes])
        return _result(out, (a,), backward)

    # ---- elementwise functions ----------------------------------------------------------
    def exp(self):
        out = self.xp.exp(self._data)
        return _result(out, (self,), lambda g: (g * out,))

    def log(self):
        x = self._data
        return _result(self.xp.log(x), (self,), lambda g: (g / x,))

    def tanh(self):
        out = self.xp.tanh(self._data)
        return _result(out, (self,), lambda g: (g * (1 - out * out),))

    def relu(self):
        x = self._data
        return _result(self.xp.maximum(x, 0), (self,), lambda g: (g * (x > 0),))

    def sigmoid(self):
        xp = self.xp
        out = xp.exp(-xp.logaddexp(0, -self._data))  # 1 / (1 + e^-x) without overflow
        return _result(out, (self,), lambda g: (g * out * (1 - out),))

    # ---- shape ----------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        old = self.shape
        try:
            out = self._data.reshape(shape)
        except (TypeError, ValueError):
            raise ValueError(f"reshape: a tensor of shape {old} ({self.size} elements) cannot take "
                             f"shape {tuple(shape)!r}") from None
        return _result(out, (self,), lambda g: (g.reshape(old),))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        axes = tuple(axes) or tuple(reversed(range(self.ndim)))
        if sorted(a % max(self.ndim, 1) if isinstance(a, int) else a for a in axes) != list(range(self.ndim)):
            raise ValueError(f"transpose: axes must be a permutation of range({self.ndim}), got {axes}")
        inverse = tuple(np.argsort(axes))  # host-ok: a permutation of axis numbers
        return _result(self._data.transpose(axes), (self,), lambda g: (g.transpose(inverse),))

    T = property(lambda self: self.transpose())

    def __getitem__(self, index):
        xp, a = self.xp, self
        index = _device_index(index, xp)

        def backward(g):
            grad = xp.zeros_like(a._data)
            scatter_add(grad, index, g)  # repeated indices add up
            return (grad,)
        return _result(a._data[index], (a,), backward)

    # ---- backward -----------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` that requires grad.

        ``grad`` is the upstream gradient (needed unless self has one element). The graph is
        released afterwards unless ``retain_graph=True`` (a second backward through it then raises).
        A tensor that an op used and that changed in place since raises RuntimeError before any
        gradient is computed (see ``version``). A leaf's gradient takes the leaf's dtype.
        """
        if not self.requires_grad:
            raise ValueError("backward() on a tensor that does not require grad "
                             "(no input had requires_grad=True)")
        if grad is None:
            if self.size != 1:
                raise ValueError("backward() without a grad argument needs a one-element tensor, "
                                 f"got shape {self.shape}")
            grad = self.xp.ones_like(self._data)
        else:
            grad = self._lift(grad).data
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad) needs grad of shape {self.shape}, got {grad.shape}")
            grad = grad.astype(self.dtype, copy=False)
        order = topological_order(self)
        for node in order:
            if node._backward is not None:
                _saved.check_versions(node)
        grads = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node))
            if node._backward is None:  # a leaf: accumulate, in the leaf's dtype
                g = g.astype(node._data.dtype, copy=False)
                if node._grad is None:
                    node._grad = g.copy()
                else:
                    node._grad += g
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is not None:
                    grads[id(parent)] = grads[id(parent)] + pg if id(parent) in grads else pg
            if not retain_graph:  # dropping the record makes the parents' .data writeable again
                node._parents, node._backward, node._saved = (), _released, None
                node._saved_by -= 1


def topological_order(root: Tensor) -> list:
    """Nodes that need a gradient, inputs before outputs (iterative DFS: no recursion limit).

    >>> x = Tensor([2.0], requires_grad=True)
    >>> [t.op_name for t in topological_order(x * x + x)]
    [None, '__mul__', '__add__']
    """
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if p.requires_grad and id(p) not in seen)
    return order


def _device_index(index, xp):
    """Index arrays (Tensors, lists, arrays) moved onto the module ``xp`` of the indexed data."""
    if isinstance(index, tuple):
        return tuple(_device_index(i, xp) for i in index)
    if isinstance(index, Tensor):
        index = index._data
    if isinstance(index, list) or (hasattr(index, "dtype") and get_array_module(index) is not xp):
        index = xp.asarray(index)
    return index
