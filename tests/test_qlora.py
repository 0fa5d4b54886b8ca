"""QLoRA: NF4 codes by hand, the chunked 4-bit LoRA op (gradchecked), quantize_base on GPT and Llama."""
from __future__ import annotations

import statistics
import tracemalloc

import numpy as np
import pytest

from tinylora import Tensor, asnumpy, gradcheck
from tinylora import functional as F
from tinylora.lora import (
    Embedding4bit,
    LoraConfig,
    apply_lora,
    dequantize_base,
    is_quantized,
    load_adapter,
    merge_lora,
    quantize_base,
    save_adapter,
)
from tinylora.lora.qlora import Linear4bit
from tinylora.models import GPT, GPTConfig, Llama, LlamaConfig
from tinylora.nf4 import NF4_LEVELS, nf4_nbytes, quantize_nf4
from tinylora.quant_ops import linear_4bit, lora_linear_4bit


def host(t):
    return asnumpy(t.data if isinstance(t, Tensor) else t)


# ---- NF4 by hand ------------------------------------------------------------------------------------
def test_the_nf4_levels_are_the_normal_quantiles_of_the_qlora_construction():
    """QLoRA's recipe: 8 positive and 7 negative N(0, 1) quantiles from offset 0.9677 down to 0.5, plus 0,
    scaled so the largest is 1."""
    normal, offset = statistics.NormalDist(), 0.9677083
    positive = [normal.inv_cdf(offset - (offset - 0.5) * i / 8) for i in range(8)]
    negative = [-normal.inv_cdf(offset - (offset - 0.5) * i / 7) for i in range(7)]
    levels = np.sort(positive + negative + [0.0])
    np.testing.assert_allclose(NF4_LEVELS, levels / np.abs(levels).max(), atol=1e-6)


def test_each_value_dequantizes_to_the_nearest_level_times_its_block_absmax():
    w = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    q = quantize_nf4(w, block_size=4)
    absmax = np.abs(w.reshape(3, 2, 4)).max(axis=-1, keepdims=True)                  # (3, 2, 1)
    nearest = NF4_LEVELS[np.abs(w.reshape(3, 2, 4, 1) / absmax[..., None] - NF4_LEVELS).argmin(-1)]
    np.testing.assert_allclose(q.dequantize(), (nearest * absmax).reshape(3, 8), rtol=1e-6)


def test_two_codes_share_a_byte_and_the_bytes_are_codes_plus_float32_scales():
    q = quantize_nf4(np.zeros((6, 128), np.float32), block_size=64)
    assert q.codes.shape == (6, 64) and q.codes.dtype == np.uint8 and q.absmax.shape == (6, 2)
    assert q.nbytes == nf4_nbytes(6, 128, 64) == 6 * 128 // 2 + 6 * 2 * 4 == 432


def test_levels_times_a_scale_come_back_exactly_and_the_even_element_is_the_low_nibble():
    w = (NF4_LEVELS * 3.0).reshape(1, 16)
    q = quantize_nf4(w, block_size=16)
    np.testing.assert_array_equal(q.dequantize(), w)
    assert q.codes[0, 0] == 0 | (1 << 4)        # elements 0 and 1 are levels 0 and 1


def test_quantize_nf4_rejects_a_block_size_that_does_not_divide_the_row():
    with pytest.raises(ValueError, match="block_size=48 must be even and divide in_features=64"):
        quantize_nf4(np.zeros((2, 64), np.float32), block_size=48)


def test_quantize_nf4_rejects_nan():
    with pytest.raises(ValueError, match="NaN or inf"):
        quantize_nf4(np.full((2, 4), np.nan, np.float32), block_size=2)


# ---- the chunked ops ---------------------------------------------------------------------------------
def four_bit(xp, backend, shape, seed=0):
    w = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return quantize_nf4(w if backend == "numpy" else xp.asarray(w), block_size=4)


def test_lora_linear_4bit_equals_lora_linear_on_the_dequantized_weight(backend, xp, make, rng):
    W0 = four_bit(xp, backend, (7, 8))
    x, b, A, B = (make(rng.normal(size=s)) for s in [(2, 3, 8), (7,), (2, 8), (7, 2)])
    out = lora_linear_4bit(x, W0, b, A, B, 0.5, chunk_rows=3)              # chunks of 3, 3, 1 rows
    expected = F.lora_linear(x, Tensor(W0.dequantize(dtype=np.float64)), b, A, B, 0.5)
    np.testing.assert_allclose(host(out), host(expected), rtol=1e-12)


def test_lora_linear_4bit_gradients_match_finite_differences(backend, xp, make, rng):
    W0 = four_bit(xp, backend, (5, 4))
    x, b, A, B = (make(rng.normal(size=s), requires_grad=True) for s in [(2, 3, 4), (5,), (2, 4), (5, 2)])
    assert gradcheck(lambda x, b, A, B: lora_linear_4bit(x, W0, b, A, B, 0.5, chunk_rows=2), x, b, A, B)


def test_lora_linear_4bit_gradients_equal_the_dequantized_references(backend, xp, make, rng):
    W0 = four_bit(xp, backend, (5, 4))
    inputs = [rng.normal(size=s) for s in [(3, 4), (2, 4), (5, 2)]]
    upstream = make(rng.uniform(0.5, 1.5, size=(3, 5)) * rng.choice([-1, 1], size=(3, 5)))
    grads = []
    for fn in (lambda x, A, B: lora_linear_4bit(x, W0, None, A, B, 2.0, chunk_rows=2),
               lambda x, A, B: F.lora_linear(x, Tensor(W0.dequantize(dtype=np.float64)), None, A, B, 2.0)):
        tensors = [make(a, requires_grad=True) for a in inputs]
        (fn(*tensors) * upstream).sum().backward()
        grads.append([host(t.grad) for t in tensors])
    for got, expected in zip(*grads):
        np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_linear_4bit_gradients_match_finite_differences(backend, xp, make, rng):
    W0 = four_bit(xp, backend, (3, 4))
    x = make(rng.normal(size=(2, 4)), requires_grad=True)
    assert gradcheck(lambda x: linear_4bit(x, W0, chunk_rows=2), x)


def test_the_4bit_op_never_holds_a_float32_copy_of_the_whole_weight():
    out_f, in_f = 4096, 256                                     # float32 W0: 4 MiB; its NF4 codes 0.5 MiB
    W0 = quantize_nf4(np.random.default_rng(0).normal(size=(out_f, in_f)).astype(np.float32), 64)
    x = Tensor(np.ones((4, in_f), np.float32), requires_grad=True)
    A = Tensor(np.ones((2, in_f), np.float32), requires_grad=True)
    B = Tensor(np.zeros((out_f, 2), np.float32), requires_grad=True)
    tracemalloc.start()
    lora_linear_4bit(x, W0, None, A, B, 1.0, chunk_rows=256).sum().backward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < out_f * in_f * 4 / 4                         # a quarter of the float32 weight at most


def test_the_4bit_op_refuses_a_float_weight():
    with pytest.raises(TypeError, match="weight must be a BlockWeight"):
        linear_4bit(np.ones((1, 4), np.float32), np.eye(4, dtype=np.float32))


# ---- quantize_base on whole models ---------------------------------------------------------------------
def tiny_llama():
    return Llama(LlamaConfig.preset("tiny"), seed=0)


def ids(vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=(2, 8))


def test_quantize_base_turns_every_linear_and_the_tied_embedding_of_a_llama_into_one_4bit_table():
    model = quantize_base(apply_lora(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])))
    layers = [m for _, m in model.named_modules() if type(m).__name__ in ("Linear", "Linear4bit")]
    assert layers and all(isinstance(m, Linear4bit) for m in layers)   # 2 x 7 projections + lm_head
    assert len(layers) == 15 and isinstance(model.model.embed_tokens, Embedding4bit)
    assert model.lm_head.weight is model.model.embed_tokens.weight      # tied: quantized once
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        f"model.layers.{i}.self_attn.{m}.adapters.default.lora_{k}"
        for i in (0, 1) for m in ("q_proj", "v_proj") for k in "AB"]


def nano_gpt():
    return GPT(GPTConfig.preset("nano"))


@pytest.mark.parametrize("make_model, vocab", [(tiny_llama, 128), (nano_gpt, 65)])
def test_a_4bit_base_gives_logits_near_the_float32_ones(make_model, vocab):
    model = make_model()
    before = model(ids(vocab))[0].data
    after = quantize_base(model, block_size=32)(ids(vocab))[0].data
    assert after.dtype == np.float32
    relative_rms = np.sqrt(((after - before) ** 2).mean() / (before ** 2).mean())
    assert relative_rms < 0.25       # measured 0.15 (Llama), 0.13 (GPT); each weight is off ~7% of its std


def test_a_fresh_adapter_on_a_4bit_base_changes_nothing_and_only_the_adapters_get_gradients():
    model = quantize_base(tiny_llama())
    base_logits = model(ids(128))[0].data
    model = apply_lora(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    logits, loss = model(ids(128), ids(128, seed=1))
    np.testing.assert_array_equal(logits.data, base_logits)
    loss.backward()
    with_grads = {n.rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.grad is not None}
    assert with_grads == {"lora_A", "lora_B"}


def test_training_the_adapters_on_a_4bit_base_lowers_the_loss():
    from tinylora.optim import AdamW
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    model = apply_lora(quantize_base(tiny_llama()), config)
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y = ids(128), ids(128, seed=1)
    first = model(x, y)[1].item()
    for _ in range(10):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(x, y)[1].item() < first - 0.1


def test_with_dropout_the_step_by_step_formula_runs_on_the_4bit_base_too():
    config = LoraConfig(r=2, lora_dropout=0.5, target_modules=["q_proj"], init_lora_weights=False)
    model = apply_lora(quantize_base(tiny_llama()), config)
    layer = model.model.layers[0].self_attn.q_proj
    x = Tensor(np.random.default_rng(0).normal(size=(2, 3, 64)).astype(np.float32))
    model.eval()
    np.testing.assert_allclose(layer.plain_forward(x, layer.adapters["default"]).data,
                               layer(x).data, rtol=1e-5, atol=1e-4)       # eval: plain formula = fused op
    model.train()
    loss = model(ids(128), ids(128, seed=1))[1]                          # training: the plain path
    loss.backward()
    assert layer.adapters["default"].lora_A.grad is not None


def test_a_4bit_adapter_saves_and_loads_into_another_4bit_base(tmp_path):
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # B random too
    model = apply_lora(quantize_base(tiny_llama()), config)
    save_adapter(model, tmp_path)
    other = load_adapter(quantize_base(tiny_llama()), tmp_path)
    np.testing.assert_array_equal(other(ids(128))[0].data, model(ids(128))[0].data)


def test_merge_on_a_4bit_base_raises_and_dequantize_base_lets_it_merge():
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = apply_lora(quantize_base(tiny_llama()), config)
    unmerged = model(ids(128))[0].data
    with pytest.raises(TypeError, match="4-bit NF4 codes.*dequantize_base"):
        merge_lora(model)
    assert not model.model.layers[0].self_attn.q_proj.merged                 # nothing changed
    merged = merge_lora(dequantize_base(model))
    assert not is_quantized(merged)
    np.testing.assert_allclose(merged(ids(128))[0].data, unmerged, atol=1e-5)


# ---- quantize_base's errors, each raised before anything changes ------------------------------------------
def test_quantize_base_refuses_a_model_that_is_already_quantized():
    model = quantize_base(tiny_llama())
    with pytest.raises(ValueError, match="already quantized"):
        quantize_base(model)


def test_quantize_base_refuses_merged_adapters():
    model = merge_lora(apply_lora(tiny_llama(), LoraConfig(r=2)))
    with pytest.raises(ValueError, match=r"merged into its weight; call unmerge_lora\(model\)"):
        quantize_base(model)
    assert not is_quantized(model)


def test_quantize_base_refuses_a_dora_adapter():
    with pytest.raises(ValueError, match="DoRA adapter"):
        quantize_base(apply_lora(tiny_llama(), LoraConfig(r=2, use_dora=True)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(method="int8"), ValueError, r"method must be one of \['nf4', 'q4_1'\], got 'int8'"),
    (dict(block_size=48), ValueError,
     r"layer .model.embed_tokens., weight 128x64.: block_size=48 must be even and divide in_features=64"),
    (dict(block_size=3), ValueError, "block_size=3 must be even"),
    (dict(block_size=64.0), TypeError, "block_size must be an int"),
])
def test_quantize_base_names_a_bad_argument_and_changes_nothing(kwargs, error, match):
    model = tiny_llama()
    with pytest.raises(error, match=match):
        quantize_base(model, **kwargs)
    assert not is_quantized(model)


def test_without_embeddings_the_tied_lm_head_stays_float32_with_its_table():
    model = quantize_base(tiny_llama(), embeddings=False)
    assert isinstance(model.model.embed_tokens.weight, Tensor) and model.lm_head.weight is \
        model.model.embed_tokens.weight
    assert isinstance(model.model.layers[0].mlp.down_proj, Linear4bit)


def test_moving_a_4bit_model_to_another_device_is_refused_before_any_parameter_moves():
    """A 4-bit weight is not a Parameter, so .to() would leave it behind; the error says what to do."""
    model = apply_lora(quantize_base(tiny_llama()), LoraConfig(r=2))
    adapter = model.model.layers[0].self_attn.q_proj.adapters["default"].lora_A
    expected = r"\.to\('cuda'\): layer 'model.embed_tokens' holds a 4-bit NF4 weight on 'cpu'.*quantize_base"
    with pytest.raises(ValueError, match=expected):
        model.to("cuda")
    assert adapter.device == "cpu"
    assert model.to("cpu") is model                            # where the weights already are: fine


def test_save_model_refuses_a_4bit_model_instead_of_writing_a_checkpoint_without_its_base(tmp_path):
    from tinylora.io import save_model
    model = quantize_base(tiny_llama())
    with pytest.raises(ValueError, match=r"'model.embed_tokens' holds a 4-bit NF4 weight.*save_adapter"):
        save_model(model, tmp_path / "model.npz")
    assert not list(tmp_path.iterdir())
