"""A NumPy-backed stand-in for CuPy that is as strict as a real GPU about host arrays.

Real CuPy refuses to mix its arrays with NumPy arrays (``cupy_array + numpy_array`` raises)
and refuses implicit conversion to NumPy (``np.asarray(cupy_array)`` raises). This fake does
the same, and it also refuses every ``np.*`` function called on one of its arrays, which real
CuPy partly forwards: op code must take its module from its inputs (``xp = get_array_module(x)``).
Running the test suite (tests/conftest.py) or notebook 05 on it makes any stray ``np.`` call in
op code fail on a CPU. ``calls`` counts every function, method and operator used (e.g.
``"matmul"``), which lets tests prove work was *not* done. Register it with
``tinylora.backend.register_device_backend(FakeCupyArray, fake_cupy)``; then ``"cuda"`` means it.

>>> import numpy as np
>>> a = fake_cupy.asarray(np.ones(2, dtype=np.float32))     # host -> "device", explicitly
>>> (a * 2).get()                                            # device -> host, explicitly
array([2., 2.], dtype=float32)
>>> a + np.ones(2)                                           # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
tinylora.fake_cupy.HostDeviceMixError: fake CuPy: a host numpy.ndarray of shape (2,) was passed ...
"""
from __future__ import annotations

import collections
import types

import numpy as np

calls: collections.Counter = collections.Counter()


class HostDeviceMixError(TypeError):
    """A host NumPy array met a device array in one operation (real CuPy raises a TypeError too)."""


def _unwrap(value):
    """FakeCupyArray -> its ndarray; a host ndarray is refused, as CuPy refuses it."""
    if isinstance(value, FakeCupyArray):
        return value._a
    if isinstance(value, np.ndarray):
        raise HostDeviceMixError(f"fake CuPy: a host numpy.ndarray of shape {value.shape} was passed to a "
                                 "device operation; move it with xp.asarray first")
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, slice):
        return slice(_unwrap(value.start), _unwrap(value.stop), _unwrap(value.step))
    return value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return FakeCupyArray(value)
    if isinstance(value, np.generic) and value.dtype.kind in "biufc":  # CuPy keeps 0-d results on device
        return FakeCupyArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _device_call(name, fn):
    def call(*args, **kwargs):
        calls[name] += 1
        return _wrap(fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
    call.__name__ = name
    return call


class FakeCupyArray:
    """An ndarray living on the pretend device."""

    __array_ufunc__ = None
    __array_function__ = None
    __array_priority__ = 1000

    def __init__(self, array: np.ndarray):
        self._a = array

    def __array__(self, *args, **kwargs):
        raise TypeError("fake CuPy: implicit conversion to a NumPy array is not allowed; "
                        "use .get() or cupy.asnumpy()")

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    T = property(lambda self: FakeCupyArray(self._a.T))
    flags = property(lambda self: self._a.flags)
    strides = property(lambda self: self._a.strides)

    def get(self):
        """Explicit device-to-host copy, as ``cupy.ndarray.get()``."""
        return self._a.copy()

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __len__(self):
        return len(self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __repr__(self):
        return f"fake_cupy.array({self._a!r})"

    def __getitem__(self, index):
        calls["getitem"] += 1
        return _wrap(self._a[_unwrap(index)])

    def __setitem__(self, index, value):
        calls["setitem"] += 1
        self._a[_unwrap(index)] = _unwrap(value)

    def __getattr__(self, name):  # methods such as sum, reshape, astype, swapaxes
        if name.startswith("__"):  # e.g. __array_interface__, which would let NumPy read the data silently
            raise AttributeError(name)
        attr = getattr(self._a, name)
        return _device_call(name, attr) if callable(attr) else _wrap(attr)


def _operator(name, op_name):
    def method(self, *args):
        calls[op_name] += 1
        return _wrap(getattr(self._a, name)(*_unwrap(args)))
    method.__name__ = name
    return method


_COUNTED_AS = {"radd": "add", "rsub": "sub", "rmul": "mul", "rtruediv": "truediv", "rfloordiv": "floordiv",
               "rpow": "pow", "rmatmul": "matmul",
               "iadd": "add", "isub": "sub", "imul": "mul", "itruediv": "truediv"}
for _name in ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
              "neg", "pos", "abs", "invert",
              "and", "or", "xor", "eq", "ne", "lt", "le", "gt", "ge", *_COUNTED_AS]:
    setattr(FakeCupyArray, f"__{_name}__", _operator(f"__{_name}__", _COUNTED_AS.get(_name, _name)))


class _FakeUfunc:
    def __init__(self, name, ufunc):
        self._name, self._ufunc = name, ufunc

    def __call__(self, *args, **kwargs):
        calls[self._name] += 1
        return _wrap(self._ufunc(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    def at(self, target, indices, values=None):
        calls[f"{self._name}.at"] += 1
        args = (_unwrap(indices),) if values is None else (_unwrap(indices), _unwrap(values))
        self._ufunc.at(_unwrap(target), *args)

    def __getattr__(self, name):
        return _device_call(f"{self._name}.{name}", getattr(self._ufunc, name))


class _FakeGenerator:
    def __init__(self, generator):
        self._g = generator

    def __getattr__(self, name):
        return _device_call(f"random.{name}", getattr(self._g, name))


class _FakeRandom(types.ModuleType):
    def default_rng(self, seed=None):
        return _FakeGenerator(np.random.default_rng(seed))

    def __getattr__(self, name):
        return _device_call(f"random.{name}", getattr(np.random, name))


class _FakeCupyModule(types.ModuleType):
    ndarray = FakeCupyArray

    def __init__(self):
        super().__init__("fake_cupy")
        self.random = _FakeRandom("fake_cupy.random")

    @staticmethod
    def asarray(value, dtype=None):
        """Host -> device transfer (allowed, as ``cupy.asarray(numpy_array)``)."""
        calls["asarray"] += 1
        if isinstance(value, FakeCupyArray):
            return value if dtype is None else FakeCupyArray(value._a.astype(dtype, copy=False))
        return FakeCupyArray(np.array(value, dtype=dtype))

    array = asarray

    @staticmethod
    def asnumpy(value):
        return value._a.copy() if isinstance(value, FakeCupyArray) else np.asarray(value)

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, np.ufunc):
            return _FakeUfunc(name, attr)
        if callable(attr) and not isinstance(attr, type):
            return _device_call(name, attr)
        return attr  # dtypes, constants such as pi, newaxis


fake_cupy = _FakeCupyModule()
