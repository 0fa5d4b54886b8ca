"""Which array module an array lives in (numpy or cupy), device moves, and scatter-add.

Every op asks ``get_array_module(*arrays)`` for ``xp`` and then only calls ``xp.*``,
so the same op code runs on the CPU (NumPy) and on a GPU (CuPy).

>>> import numpy as np
>>> get_array_module(np.zeros(3)) is np
True
"""
from __future__ import annotations

import numpy as np

try:  # CuPy is optional: `pip install "tinylora[gpu]"`.
    import cupy as _cupy
except Exception:  # ImportError, or a CuPy without a working CUDA runtime
    _cupy = None

_GPU_INSTALL_HINT = (
    "CuPy is not installed (or found no GPU). Install the GPU extra with "
    "`pip install \"tinylora[gpu]\"` (it pulls a CuPy wheel such as cupy-cuda12x) "
    "on a machine with an NVIDIA GPU."
)

# (array type, array module) pairs for device arrays. Tests register a fake CuPy here.
_device_array_types: list[tuple[type, object]] = []
# The module that backs the "cuda" device; None when there is none.
_cuda_module = None
if _cupy is not None:
    _device_array_types.append((_cupy.ndarray, _cupy))
    _cuda_module = _cupy


def register_device_backend(array_type: type, module, *, as_cuda: bool = True) -> None:
    """Teach the backend a device array type and its module (used by the fake-CuPy test backend)."""
    global _cuda_module
    _device_array_types.insert(0, (array_type, module))
    if as_cuda:
        _cuda_module = module


def unregister_device_backend(array_type: type) -> None:
    """Undo ``register_device_backend``; "cuda" falls back to real CuPy (or none)."""
    global _cuda_module
    _device_array_types[:] = [(t, m) for t, m in _device_array_types if t is not array_type]
    _cuda_module = _cupy


def get_array_module(*arrays):
    """Return the module (``numpy`` or ``cupy``) that owns the given arrays.

    Non-array arguments (Python scalars, None) are ignored; with no device array, NumPy.
    """
    for a in arrays:
        kind = type(a)
        if kind is np.ndarray:
            continue
        for array_type, module in _device_array_types:
            if isinstance(a, array_type):
                return module
    return np


def device_of(a) -> str:
    """"cpu" for host arrays, "cuda" for device arrays."""
    return "cpu" if get_array_module(a) is np else "cuda"


def is_cuda_available() -> bool:
    """True when a CUDA array module (CuPy with a GPU) is usable."""
    if _cuda_module is None:
        return False
    if _cuda_module is _cupy:
        try:
            return _cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:
            return False
    return True


def asnumpy(a) -> np.ndarray:
    """A host NumPy copy (or view) of any array; checkpoints are always saved through this."""
    xp = get_array_module(a)
    if xp is np:
        return np.asarray(a)
    return xp.asnumpy(a)


def to_device(a, device: str):
    """Move an array to ``"cpu"`` or ``"cuda"``; a no-op when it is already there."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cpu":
        return asnumpy(a)
    if _cuda_module is None:
        raise RuntimeError(f"Cannot move an array to 'cuda': {_GPU_INSTALL_HINT}")
    if get_array_module(a) is _cuda_module:
        return a
    return _cuda_module.asarray(a)


def scatter_add(target, indices, values) -> None:
    """In place ``target[indices] += values`` where repeated indices add up.

    ``target[idx] += v`` would keep only the last write for a repeated index;
    ``xp.add.at`` (NumPy, and CuPy >= 12) accumulates every one.

    >>> t = np.zeros(3); scatter_add(t, np.array([0, 0, 2]), np.array([1., 2., 5.])); t
    array([3., 0., 5.])
    """
    xp = get_array_module(target, indices, values)
    xp.add.at(target, indices, values)
