"""Host memory reuse: fit keeps freed NumPy buffers in the process (speed only, never a number)."""
import platform
import subprocess
import sys

import numpy as np
import pytest

from tinylora.models import GPT, GPTConfig
from tinylora.train import fit

ASK = "from tinylora.host_memory import keep_freed_host_memory as k; print(k(), k())"


def run_fresh(env_value=None):
    env = None if env_value is None else {"TINYLORA_KEEP_FREED_MEMORY": env_value, "PATH": ""}
    return subprocess.run([sys.executable, "-c", ASK], capture_output=True, text=True, check=True,
                          env=env).stdout.split()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists only in glibc")
def test_on_glibc_the_setting_takes_effect_once_and_stays():
    assert run_fresh() == ["True", "True"]


def test_the_environment_can_turn_it_off():
    assert run_fresh("0") == ["False", "False"]


def test_fit_applies_it_before_training(monkeypatch):
    calls = []
    monkeypatch.setattr("tinylora.train.keep_freed_host_memory", lambda: calls.append("applied"))
    x = np.arange(64).reshape(2, 32) % 7
    fit(GPT(GPTConfig.preset("nano")), lambda rng: (x, x), steps=1, progress=False)
    assert calls == ["applied"]

