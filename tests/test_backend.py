"""backend.py (array module lookup, device moves, scatter-add) and the fake-CuPy test backend itself."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora import asnumpy, get_array_module, scatter_add, to_device
from tinylora import backend as backend_module

from .fake_cupy import FakeCupyArray, HostDeviceMixError, calls, fake_cupy


def test_get_array_module_of_host_arrays_and_scalars_is_numpy():
    assert get_array_module(np.zeros(2), 3.0, None) is np
    assert get_array_module() is np


def test_get_array_module_finds_the_device_array_among_arguments(backend, xp):
    assert get_array_module(2.0, xp.asarray(np.zeros(2))) is xp


def test_asnumpy_returns_a_host_copy_with_the_same_values(xp):
    host = asnumpy(xp.asarray(np.array([1.0, 2.0])))
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, [1.0, 2.0])


@pytest.mark.parametrize("device", ["gpu", "cuda:0", "CPU", None])
def test_to_device_refuses_unknown_device_names(device):
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        to_device(np.zeros(2), device)


@pytest.mark.parametrize("backend", ["fakecupy"], indirect=True)
def test_to_device_moves_between_host_and_device(backend):
    on_device = to_device(np.array([1.0, 2.0]), "cuda")
    assert isinstance(on_device, FakeCupyArray) and to_device(on_device, "cuda") is on_device
    np.testing.assert_array_equal(to_device(on_device, "cpu"), [1.0, 2.0])


def test_to_device_cuda_without_cupy_names_the_install_command():
    if backend_module._cupy is not None:
        pytest.skip("real CuPy is installed")
    with pytest.raises(RuntimeError, match=r'pip install "tinylora\[gpu\]"'):
        to_device(np.zeros(2), "cuda")


def test_scatter_add_adds_every_repeated_index(xp):
    """Index 0 appears twice, so it receives 1 + 2; `target[idx] += v` would keep only the 2."""
    target = xp.asarray(np.zeros(3))
    scatter_add(target, xp.asarray(np.array([0, 0, 2])), xp.asarray(np.array([1.0, 2.0, 5.0])))
    np.testing.assert_array_equal(asnumpy(target), [3.0, 0.0, 5.0])


# ---- the fake itself: it must be able to fail a test, as real CuPy would --------------------
def test_fake_cupy_refuses_a_host_array_in_an_operation():
    with pytest.raises(HostDeviceMixError, match="host numpy.ndarray"):
        fake_cupy.asarray(np.ones(2)) + np.ones(2)
    with pytest.raises(HostDeviceMixError):
        fake_cupy.exp(np.ones(2))


def test_fake_cupy_refuses_implicit_conversion_to_numpy():
    with pytest.raises(TypeError, match="implicit conversion"):
        np.asarray(fake_cupy.asarray(np.ones(2)))


def test_fake_cupy_counts_the_operations_it_runs():
    calls.clear()
    a = fake_cupy.asarray(np.ones((2, 2)))
    a @ a
    fake_cupy.matmul(a, a)
    assert calls["matmul"] == 2
