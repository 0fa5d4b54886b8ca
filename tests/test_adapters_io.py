"""Saving and loading adapters: exact round trips, what the file holds, and refused files (PEFT's format
itself: tests/test_peft_format.py)."""
import json
import os

import numpy as np
import pytest

from tinylora import asnumpy, lora
from tinylora.checkpoint import load_safetensors, save_safetensors
from tinylora.gpt import GPT, GPTConfig
from tinylora.lora import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, LoraConfig
from tinylora.lora.io import tensor_checksum
from tinylora.models import Llama, LlamaConfig

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def ids(shape, vocab=11, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


def trained_adapter(config=None, model=None):
    """A TINY GPT whose adapter has random B (so it changes the output), as if trained."""
    config = config or LoraConfig(r=2, init_lora_weights=False)
    return lora.apply_lora(model or GPT(TINY, seed=0), config)


def weights(model):
    return {name: p.numpy() for name, p in model.named_parameters()}


def test_save_then_load_into_a_fresh_base_reproduces_the_outputs_exactly(tmp_path):
    model, x = trained_adapter(), ids((2, 8))
    lora.save_adapter(model, tmp_path)
    fresh = lora.load_adapter(GPT(TINY, seed=0), tmp_path)
    np.testing.assert_array_equal(fresh(x)[0].data, model(x)[0].data)


@pytest.mark.parametrize("config", [LoraConfig(r=2, use_dora=True, init_lora_weights=False),
                                    LoraConfig(r=2, init_lora_weights="pissa", use_rslora=True)],
                         ids=["dora", "pissa"])
def test_variant_adapters_round_trip_exactly(tmp_path, config):
    model, x = trained_adapter(config), ids((2, 8))
    for _, layer in lora.lora_layers(model):
        layer.adapters["default"].lora_B.data += 0.1  # as if trained
    lora.save_adapter(model, tmp_path)
    fresh = lora.load_adapter(GPT(TINY, seed=0), tmp_path)
    np.testing.assert_array_equal(fresh(x)[0].data, model(x)[0].data)


def test_file_size_is_eight_bytes_plus_header_plus_four_bytes_per_adapter_parameter(tmp_path):
    model = trained_adapter()
    lora.save_adapter(model, tmp_path)
    path = tmp_path / ADAPTER_WEIGHTS_NAME
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    adapter_parameters = 2 * 2 * 2 * (8 + 8)  # 2 layers x (q, v) x r·(in + out) = 128
    assert lora.count_parameters(model)[0] == adapter_parameters
    assert os.path.getsize(path) == 8 + header_length + 4 * adapter_parameters
    assert header_length < 2048  # 8 tensor entries with PEFT's long names, the base shapes, the checksum


def test_the_file_holds_only_the_adapter_weights(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    arrays, _ = load_safetensors(tmp_path / ADAPTER_WEIGHTS_NAME)
    assert sorted(arrays) == [f"base_model.model.blocks.{i}.attn.{p}.{m}.weight" for i in (0, 1)
                              for p in ("q_proj", "v_proj") for m in ("lora_A", "lora_B")]
    assert {a.shape for a in arrays.values()} == {(2, 8), (8, 2)}


def test_config_file_records_the_lora_config_and_the_metadata_the_base_shapes(tmp_path):
    lora.save_adapter(trained_adapter(LoraConfig(r=2, lora_alpha=5)), tmp_path)
    saved = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    assert LoraConfig.from_peft_dict(saved) == LoraConfig(r=2, lora_alpha=5)
    _, metadata = load_safetensors(tmp_path / ADAPTER_WEIGHTS_NAME)
    assert json.loads(metadata["tinylora.base_layers"])["blocks.1.attn.v_proj"] == [8, 8]


def test_loading_under_another_name_keeps_both_adapters(tmp_path):
    model = trained_adapter()
    lora.save_adapter(model, tmp_path)
    lora.load_adapter(model, tmp_path, adapter_name="copy")
    assert lora.adapter_names(model) == ["copy", "default"]
    assert lora.active_adapter(model) == "copy"


def test_save_from_a_device_model_writes_host_numpy_that_a_cpu_model_loads(backend, tmp_path):
    device, x = ("cpu" if backend == "numpy" else "cuda"), ids((2, 8))
    model = trained_adapter(model=GPT(TINY, seed=0).to(device))
    lora.save_adapter(model, tmp_path)
    arrays, _ = load_safetensors(tmp_path / ADAPTER_WEIGHTS_NAME)
    assert all(type(a) is np.ndarray for a in arrays.values())
    on_cpu = lora.load_adapter(GPT(TINY, seed=0), tmp_path)
    np.testing.assert_allclose(on_cpu(x)[0].data, asnumpy(model(x)[0].data), atol=1e-6)


def test_load_puts_the_adapter_on_the_device_of_the_model(backend, tmp_path):
    device = "cpu" if backend == "numpy" else "cuda"
    lora.save_adapter(trained_adapter(), tmp_path)
    model = lora.load_adapter(GPT(TINY, seed=0).to(device), tmp_path)
    assert {p.device for p in model.parameters()} == {device}


# ---- refused files -------------------------------------------------------------------------------
def assert_unchanged(model, before):
    assert not lora.lora_layers(model)
    assert weights(model).keys() == before.keys()
    for name, w in weights(model).items():
        np.testing.assert_array_equal(w, before[name])


def test_loading_into_a_base_of_other_width_names_the_layer_and_both_shapes(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    wider = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=12), seed=0)
    before = weights(wider)
    with pytest.raises(ValueError, match=r"layer 'blocks.0.attn.q_proj' of shape \(out, in\) = \(8, 8\), "
                                         r"but this model's 'blocks.0.attn.q_proj' is \(12, 12\)"):
        lora.load_adapter(wider, tmp_path)
    assert_unchanged(wider, before)


def test_loading_into_a_deeper_base_lists_the_layers_the_adapter_lacks(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    deeper = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=3, n_head=2, n_embd=8), seed=0)
    before = weights(deeper)
    lacks = r"the adapter lacks: \['blocks.2.attn.q_proj', 'blocks.2.attn.v_proj'\]"
    with pytest.raises(ValueError, match=lacks):
        lora.load_adapter(deeper, tmp_path)
    assert_unchanged(deeper, before)


def test_truncated_weights_file_is_refused_and_changes_nothing(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    path = tmp_path / ADAPTER_WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:-10])
    model = GPT(TINY, seed=0)
    before = weights(model)
    with pytest.raises(ValueError, match="is truncated or corrupt"):
        lora.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_corrupt_config_json_is_refused_and_changes_nothing(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    path = tmp_path / ADAPTER_CONFIG_NAME
    path.write_text(path.read_text()[:40])
    model = GPT(TINY, seed=0)
    before = weights(model)
    with pytest.raises(ValueError, match=f"{ADAPTER_CONFIG_NAME}' is truncated or corrupt: JSONDecodeError"):
        lora.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_config_with_a_bad_rank_is_refused_naming_the_file(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    path = tmp_path / ADAPTER_CONFIG_NAME
    saved = json.loads(path.read_text())
    saved["r"] = -1
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=
                       f"{ADAPTER_CONFIG_NAME}': LoraConfig.r must be a positive int, got -1"):
        lora.load_adapter(GPT(TINY, seed=0), tmp_path)


def test_missing_adapter_folder_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no {ADAPTER_CONFIG_NAME} at"):
        lora.load_adapter(GPT(TINY), tmp_path / "nothing")


def test_loading_an_adapter_name_the_model_already_has_is_refused(tmp_path):
    model = trained_adapter()
    lora.save_adapter(model, tmp_path)
    before = weights(model)
    with pytest.raises(ValueError, match="already has an adapter named 'default'"):
        lora.load_adapter(model, tmp_path)
    assert weights(model).keys() == before.keys()


def test_saving_a_merged_adapter_is_refused(tmp_path):
    model = lora.merge_lora(trained_adapter())
    with pytest.raises(ValueError, match="adapter 'default' is merged; call unmerge_lora"):
        lora.save_adapter(model, tmp_path)


def test_a_flipped_bit_in_the_weights_is_a_clear_error_naming_the_file(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    path = tmp_path / ADAPTER_WEIGHTS_NAME
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01  # the last tensor's bytes: still a well-formed file, one number changed
    path.write_bytes(bytes(raw))
    model = GPT(TINY, seed=0)
    before = weights(model)
    with pytest.raises(ValueError, match=f"{ADAPTER_WEIGHTS_NAME}' is damaged: the checksum of its tensors"):
        lora.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_adapter_tensor_is_refused_naming_it(tmp_path, bad):
    lora.save_adapter(trained_adapter(), tmp_path)
    path = tmp_path / ADAPTER_WEIGHTS_NAME
    arrays, metadata = load_safetensors(path)
    key = "base_model.model.blocks.1.attn.v_proj.lora_B.weight"
    arrays[key][0, 0] = bad
    save_safetensors(path, arrays, {**metadata, "tinylora.checksum": tensor_checksum(arrays)})
    model = GPT(TINY, seed=0)
    before = weights(model)
    with pytest.raises(ValueError, match=f"{key} holds 1 non-finite value"):
        lora.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_a_missing_weights_file_is_a_file_not_found_error_and_changes_nothing(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    (tmp_path / ADAPTER_WEIGHTS_NAME).unlink()
    model = GPT(TINY, seed=0)
    before = weights(model)
    with pytest.raises(FileNotFoundError, match=f"no {ADAPTER_WEIGHTS_NAME} at"):
        lora.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_an_adapter_for_other_layer_names_lists_them_and_changes_nothing(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    llama = Llama(LlamaConfig.preset("tiny"), seed=0)
    before = weights(llama)
    lacks = r"layers the adapter has but the model lacks: \['blocks.0.attn.q_proj'"
    with pytest.raises(ValueError, match=lacks):
        lora.load_adapter(llama, tmp_path)
    assert_unchanged(llama, before)


def test_an_adapter_of_another_rank_than_its_config_says_is_refused(tmp_path):
    lora.save_adapter(trained_adapter(), tmp_path)
    path = tmp_path / ADAPTER_CONFIG_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), "r": 1}))
    wrong = r"blocks.0.attn.q_proj.lora_A: expected shape \(1, 8\) \(r=1\), got \(2, 8\)"
    with pytest.raises(ValueError, match=wrong):
        lora.load_adapter(GPT(TINY, seed=0), tmp_path)


@pytest.mark.parametrize("bias", ["all", "lora_only"])
def test_trained_biases_are_saved_and_loaded_as_peft_does(tmp_path, bias):
    model, x = trained_adapter(LoraConfig(r=2, init_lora_weights=False, bias=bias)), ids((2, 8))
    for name, p in model.named_parameters():
        if p.requires_grad and name.endswith(".bias"):
            p.data += 0.5  # as if trained
    lora.save_adapter(model, tmp_path)
    arrays, _ = load_safetensors(tmp_path / ADAPTER_WEIGHTS_NAME)
    assert "base_model.model.blocks.0.attn.q_proj.base_layer.bias" in arrays
    assert ("base_model.model.blocks.0.attn.k_proj.bias" in arrays) == (bias == "all")
    fresh = lora.load_adapter(GPT(TINY, seed=0), tmp_path)
    np.testing.assert_array_equal(fresh(x)[0].data, model(x)[0].data)


def test_get_delta_weights_of_an_unknown_adapter_lists_the_adapters():
    with pytest.raises(ValueError, match=r"no adapter named 'ghost'; the model has \['default'\]"):
        lora.get_delta_weights(trained_adapter(), "ghost")


@pytest.mark.parametrize("alpha", [float("inf"), float("nan")])
def test_a_non_finite_lora_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match=f"LoraConfig.lora_alpha must be a finite number, got {alpha}"):
        LoraConfig(lora_alpha=alpha)


def test_a_complex_adapter_tensor_is_refused_naming_it(tmp_path):
    from safetensors.numpy import save
    lora.save_adapter(trained_adapter(), tmp_path)
    path = tmp_path / ADAPTER_WEIGHTS_NAME
    arrays, metadata = load_safetensors(path)
    key = "base_model.model.blocks.0.attn.q_proj.lora_A.weight"
    arrays[key] = arrays[key].astype(np.complex64)  # safetensors stores complex; tinylora's writer would not
    path.write_bytes(save(arrays, metadata={**metadata, "tinylora.checksum": tensor_checksum(arrays)}))
    model = GPT(TINY, seed=0)
    before = weights(model)
    with pytest.raises(TypeError, match=f"{key} must be an array of real numbers.*got dtype complex64"):
        lora.load_adapter(model, tmp_path)
    assert_unchanged(model, before)
