"""memory_report: bytes a reader can count by hand, on small layers and a tiny Llama."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora.lora import LoraConfig, apply_lora, quantize_base
from tinylora.memory import memory_report
from tinylora.models import Llama, LlamaConfig
from tinylora.nf4 import nf4_nbytes
from tinylora.nn import Linear, Module
from tinylora.optim import AdamW


class OneLinear(Module):
    def __init__(self, in_features=128, out_features=16, bias=False):
        super().__init__()
        self.proj = Linear(in_features, out_features, bias=bias, rng=np.random.default_rng(0))

    def forward(self, x):
        return self.proj(x)


def test_a_frozen_float32_linear_costs_out_times_in_times_four_bytes_plus_its_bias():
    model = OneLinear(128, 16, bias=True).requires_grad_(False)
    report = memory_report(model, verbose=False)
    assert report.frozen_bytes == 16 * 128 * 4 + 16 * 4 == 8256
    assert report.trainable_bytes == report.gradient_bytes == report.frozen_4bit_bytes == 0


def test_a_4bit_linear_costs_half_a_byte_a_weight_plus_a_float32_scale_per_block():
    report = memory_report(quantize_base(OneLinear(128, 16), block_size=64), verbose=False)
    assert report.frozen_4bit_bytes == 16 * 128 // 2 + 16 * (128 // 64) * 4 == 1152
    assert report.frozen_bytes == 0 and report.frozen_params == 16 * 128


def test_lora_adapters_their_gradients_and_adamw_state_are_counted_from_the_arrays():
    model = apply_lora(OneLinear(128, 16), LoraConfig(r=4, target_modules=["proj"]))
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    assert memory_report(model, optimizer, verbose=False).optimizer_bytes == 0   # no state before a step
    model(np.ones((2, 128), np.float32)).sum().backward()
    optimizer.step()
    report = memory_report(model, optimizer, verbose=False)
    adapters = 4 * (128 + 16) * 4                                  # A (4, 128) and B (16, 4), float32
    assert report.trainable_bytes == report.gradient_bytes == adapters == 2304
    assert report.optimizer_bytes == 2 * adapters                  # AdamW's m and v
    assert report.frozen_bytes == 16 * 128 * 4
    assert report.total == 16 * 128 * 4 + 4 * adapters


def test_a_tied_4bit_table_counts_once():
    config = LlamaConfig.preset("tiny")
    model = quantize_base(Llama(config, seed=0))
    h, i, kv = config.hidden_size, config.intermediate_size, config.num_key_value_heads * config.head_dim
    per_layer = (2 * nf4_nbytes(h, h) + 2 * nf4_nbytes(kv, h) + 2 * nf4_nbytes(i, h) + nf4_nbytes(h, i))
    expected = config.num_hidden_layers * per_layer + nf4_nbytes(config.vocab_size, h)  # lm_head is the table
    assert memory_report(model, verbose=False).frozen_4bit_bytes == expected


def test_measured_activations_hold_at_least_the_logits_and_leave_the_gradients_as_they_were():
    model = apply_lora(Llama(LlamaConfig.preset("tiny"), seed=0), LoraConfig(r=2))
    x = np.random.default_rng(0).integers(0, 128, size=(2, 8))
    report = memory_report(model, batch=(x, x), verbose=False)
    assert report.activation_bytes >= 2 * 8 * 128 * 4     # the (B, T, V) float32 logits, kept for the loss
    assert all(p.grad is None for p in model.parameters())


def test_the_report_prints_a_table_of_every_kind_and_the_total(capsys):
    memory_report(OneLinear(), verbose=True)
    out = capsys.readouterr().out
    for row in ("frozen weights, float", "frozen weights, quantized", "trainable parameters", "gradients",
                "optimizer state", "activations", "not measured", "total"):
        assert row in out


def test_memory_report_names_a_bad_batch():
    with pytest.raises(TypeError, match=r"batch must be a pair \(x, y\)"):
        memory_report(OneLinear(), batch=np.zeros((2, 8)), verbose=False)
