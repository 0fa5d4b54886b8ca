"""The lora package's layout: it loads no model, the old names still work, and the plain LoRA formula
and the fused op it is replaced by compute the same thing."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinylora import lora
from tinylora.lora import LoraConfig, LoraLinear
from tinylora.nn import Linear
from tinylora.tensor import Tensor

ROOT = Path(__file__).resolve().parent.parent


def test_importing_tinylora_lora_in_a_fresh_interpreter_loads_no_model_module():
    code = ("import sys, tinylora.lora; "
            "print(sorted(m for m in sys.modules if m.startswith(('tinylora.models', 'tinylora.gpt'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_old_class_name_is_an_alias_of_the_new_one():
    from tinylora.lora import LoRALinear
    from tinylora.lora.layer import LoRALinear as from_the_layer_module

    assert LoRALinear is LoraLinear is from_the_layer_module



@pytest.mark.parametrize("module, names", [
    ("tinylora.lora.config", ["LoraConfig"]),
    ("tinylora.lora.variants", ["lora_scaling", "LoraVariant", "DoraVariant", "PissaVariant"]),
    ("tinylora.lora.layer", ["LoraLinear", "LoraAdapter"]),
    ("tinylora.lora.model", ["apply_lora", "find_targets", "lora_layers", "lora_plus_param_groups"]),
    ("tinylora.lora.io", ["save_adapter", "load_adapter", "ADAPTER_CONFIG_NAME", "ADAPTER_WEIGHTS_NAME"]),
])
def test_each_name_lives_in_its_own_module_and_is_re_exported(module, names):
    imported = __import__(module, fromlist=names)
    for name in names:
        assert getattr(imported, name) is getattr(lora, name), name


def layer_with_random_b(lora_dropout=0.0):
    """A float64 LoraLinear (5 -> 4) whose adapter has a non-zero B, so the update matters."""
    layer = LoraLinear(Linear(5, 4, rng=np.random.default_rng(0), dtype=np.float64))
    config = LoraConfig(r=2, lora_alpha=3, init_lora_weights=False, lora_dropout=lora_dropout)
    layer.add_adapter("default", config, np.random.default_rng(1))
    layer.active_adapter = "default"
    adapter = layer.adapters["default"]
    assert np.abs(adapter.lora_B.data).min() > 0
    return layer, adapter


def output_and_gradients(forward, layer, adapter, x, upstream):
    x = Tensor(x, requires_grad=True)
    for p in (adapter.lora_A, adapter.lora_B):
        p.grad = None
    out = forward(x, adapter)
    out.backward(upstream)
    return out.data, x.grad, adapter.lora_A.grad.copy(), adapter.lora_B.grad.copy()


def test_plain_formula_and_fused_op_give_the_same_output_and_gradients():
    """plain: W0·x + b + s·B·(A·x) op by op; fused: F.lora_linear with W = W0 + s·B·A formed once."""
    layer, adapter = layer_with_random_b()
    rng = np.random.default_rng(2)
    x, upstream = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 4))
    plain = output_and_gradients(layer.plain_forward, layer, adapter, x, upstream)
    fused = output_and_gradients(layer.fused_forward, layer, adapter, x, upstream)
    W0, b = layer.base_layer.weight.data, layer.base_layer.bias.data
    by_hand = x @ W0.T + b + adapter.scaling * (x @ adapter.lora_A.data.T) @ adapter.lora_B.data.T
    np.testing.assert_allclose(plain[0], by_hand, rtol=1e-12, atol=1e-12)
    for name, p, f in zip(["output", "dL/dx", "dL/dA", "dL/dB"], plain, fused):
        np.testing.assert_allclose(f, p, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("lora_dropout, training, expected", [
    (0.0, True, "fused"), (0.5, False, "fused"), (0.5, True, "plain"),
])
def test_forward_takes_the_fused_op_unless_dropout_is_on(monkeypatch, lora_dropout, training, expected):
    layer, _ = layer_with_random_b(lora_dropout)
    layer.train(training)
    taken = []
    for path in ("plain", "fused"):
        original = getattr(layer, f"{path}_forward")

        def recording(x, adapter, path=path, original=original):
            taken.append(path)
            return original(x, adapter)
        monkeypatch.setattr(layer, f"{path}_forward", recording)
    layer(np.ones((3, 5)))
    assert taken == [expected]
