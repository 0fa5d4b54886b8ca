"""The strict fake-CuPy backend the tests run on; it lives in the package, ``tinylora.fake_cupy``, so that
notebook 05 can show it too. This module re-exports it for the test suite (tests/conftest.py)."""
from tinylora.fake_cupy import FakeCupyArray, HostDeviceMixError, calls, fake_cupy

__all__ = ["FakeCupyArray", "HostDeviceMixError", "calls", "fake_cupy"]
