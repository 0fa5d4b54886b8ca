"""PEFT's adapter format: the keys tinylora writes, adapters written by real PEFT (a committed fixture made
by tests/fixtures/make_peft_fixtures.py), old tinylora adapters, and PEFT configs tinylora refuses."""
from __future__ import annotations

import json
import pathlib
import re
import shutil

import numpy as np
import pytest

from tinylora import load_pretrained, lora
from tinylora.io import load_safetensors, save_safetensors
from tinylora.lora import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, LoraConfig
from tinylora.models import GPT, GPTConfig, Llama, LlamaConfig

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "peft_tiny"
EXPECTED = np.load(FIXTURE / "expected.npz")
TINY_GPT = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
# Every key peft 0.21's LoraConfig.save_pretrained writes except peft_version (PEFT fills in its own).
PEFT_KEYS = sorted([
    "alora_invocation_tokens", "alpha_pattern", "arrow_config", "auto_mapping", "base_model_name_or_path",
    "bias", "corda_config", "ensure_weight_tying", "eva_config", "exclude_modules", "fan_in_fan_out",
    "inference_mode", "init_lora_weights", "kasa_config", "layer_replication", "layers_pattern",
    "layers_to_transform", "loftq_config", "lora_alpha", "lora_bias", "lora_dropout", "lora_ga_config",
    "megatron_config", "megatron_core", "modules_to_save", "monteclora_config", "peft_type",
    "qalora_group_size", "r", "rank_pattern", "revision", "target_modules", "target_parameters", "task_type",
    "trainable_token_indices", "use_bdlora", "use_dora", "use_qalora", "use_rslora", "velora_config"])


def tiny_base():
    with pytest.warns(UserWarning, match="has no tokenizer"):
        model, _ = load_pretrained(FIXTURE / "base")
    return model


def weights(model):
    return {name: p.numpy().copy() for name, p in model.named_parameters()}


def assert_unchanged(model, before):
    assert not lora.lora_layers(model)
    after = weights(model)
    assert after.keys() == before.keys()
    for name, w in after.items():
        np.testing.assert_array_equal(w, before[name])


def relative_error(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


# ---- what tinylora writes --------------------------------------------------------------------------------
def test_adapter_config_has_every_key_peft_writes_at_peft_values():
    d = LoraConfig(r=2, lora_alpha=4, target_modules=["v_proj", "q_proj"], use_rslora=True).to_peft_dict()
    assert sorted(d) == PEFT_KEYS
    assert (d["peft_type"], d["task_type"], d["inference_mode"]) == ("LORA", "CAUSAL_LM", True)
    assert (d["r"], d["lora_alpha"], d["use_rslora"]) == (2, 4, True)
    assert d["target_modules"] == ["q_proj", "v_proj"]
    assert (d["rank_pattern"], d["layers_to_transform"], d["fan_in_fan_out"]) == ({}, None, False)


def test_kaiming_init_is_written_as_peft_true_which_draws_the_same_a():
    assert LoraConfig(init_lora_weights="kaiming").to_peft_dict()["init_lora_weights"] is True


def test_config_file_is_exactly_what_peft_writes_for_the_same_config_and_base(tmp_path):
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    kwargs = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.05, use_rslora=True,
                  init_lora_weights="gaussian", bias="lora_only")
    hf_base = transformers.LlamaForCausalLM.from_pretrained(str(FIXTURE / "base"))
    peft_model = peft.get_peft_model(hf_base, peft.LoraConfig(task_type="CAUSAL_LM", **kwargs))
    peft_model.save_pretrained(tmp_path / "p")
    lora.save_adapter(lora.apply_lora(tiny_base(), LoraConfig(**kwargs)), tmp_path / "t")
    theirs = json.loads((tmp_path / "p" / ADAPTER_CONFIG_NAME).read_text())
    theirs.pop("peft_version")
    theirs["target_modules"] = sorted(theirs["target_modules"])  # PEFT writes a set, in set order
    assert json.loads((tmp_path / "t" / ADAPTER_CONFIG_NAME).read_text()) == theirs


def test_weights_use_peft_key_names_and_metadata_holds_the_base_shapes(tmp_path):
    model = lora.apply_lora(Llama(LlamaConfig.preset("tiny"), seed=0), LoraConfig(r=2))
    lora.save_adapter(model, tmp_path)
    arrays, metadata = load_safetensors(tmp_path / ADAPTER_WEIGHTS_NAME)
    prefix = "base_model.model.model.layers"
    assert sorted(arrays) == [f"{prefix}.{i}.self_attn.{p}.lora_{m}.weight" for i in (0, 1)
                              for p in ("q_proj", "v_proj") for m in "AB"]
    assert arrays[f"{prefix}.0.self_attn.v_proj.lora_B.weight"].shape == (32, 2)  # (out, r): 2 kv heads x 16
    assert metadata["format"] == "pt"
    assert json.loads(metadata["tinylora.base_layers"])["model.layers.1.self_attn.v_proj"] == [32, 64]


def test_dora_magnitude_is_saved_under_peft_lora_magnitude_vector(tmp_path):
    model = lora.apply_lora(GPT(TINY_GPT, seed=0), LoraConfig(r=2, use_dora=True, target_modules=["q_proj"]))
    lora.save_adapter(model, tmp_path)
    arrays, _ = load_safetensors(tmp_path / ADAPTER_WEIGHTS_NAME)
    assert arrays["base_model.model.blocks.1.attn.q_proj.lora_magnitude_vector"].shape == (8,)


def test_base_model_name_or_path_is_the_source_load_pretrained_was_given(tmp_path):
    model = lora.apply_lora(tiny_base(), LoraConfig(r=2))
    lora.save_adapter(model, tmp_path)
    saved = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    assert saved["base_model_name_or_path"] == str(FIXTURE / "base")


def test_a_model_of_unknown_origin_saves_base_model_name_or_path_as_null(tmp_path):
    lora.save_adapter(lora.apply_lora(GPT(TINY_GPT, seed=0), LoraConfig(r=2)), tmp_path)
    assert json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())["base_model_name_or_path"] is None


# ---- adapters written by real PEFT (the committed fixture) --------------------------------------------
def test_the_fixture_base_gives_transformers_logits():
    model = tiny_base()
    assert relative_error(model(EXPECTED["ids"])[0].data, EXPECTED["base"]) < 1e-5


@pytest.mark.parametrize("variant", ["lora", "rslora", "dora"])
def test_an_adapter_written_by_peft_gives_peft_logits(variant):
    model = lora.load_adapter(tiny_base(), FIXTURE / variant)
    logits = model(EXPECTED["ids"])[0].data
    assert relative_error(EXPECTED[variant], EXPECTED["base"]) > 0.1  # the adapter changes the logits a lot
    assert relative_error(logits, EXPECTED[variant]) < 1e-5


@pytest.mark.parametrize("variant", ["lora", "dora"])
def test_print_trainable_parameters_prints_the_line_peft_printed_for_the_fixture(capsys, variant):
    config = json.loads((FIXTURE / variant / ADAPTER_CONFIG_NAME).read_text())
    model = lora.apply_lora(tiny_base(), LoraConfig.from_peft_dict(config))
    lora.print_trainable_parameters(model)  # lora: 2 layers x 4·((32+32) + 2·(32+16) + (32+32) + 3·(32+64))
    assert capsys.readouterr().out.strip() == json.loads(str(EXPECTED["info"]))["printed"][variant]


def test_a_peft_adapter_saved_again_by_tinylora_has_the_same_tensors_and_config(tmp_path):
    model = lora.load_adapter(tiny_base(), FIXTURE / "rslora")
    lora.save_adapter(model, tmp_path)
    theirs, _ = load_safetensors(FIXTURE / "rslora" / ADAPTER_WEIGHTS_NAME)
    ours, _ = load_safetensors(tmp_path / ADAPTER_WEIGHTS_NAME)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key])
    config = json.loads((FIXTURE / "rslora" / ADAPTER_CONFIG_NAME).read_text())
    config.pop("peft_version")
    config["base_model_name_or_path"] = str(FIXTURE / "base")
    config["target_modules"] = sorted(config["target_modules"])
    assert json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text()) == config


def test_a_peft_file_without_tinylora_metadata_is_shape_checked_from_its_tensors(tmp_path):
    other = Llama(LlamaConfig(vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2), seed=0)
    before = weights(other)
    q = "'model.layers.0.self_attn.q_proj'"
    shapes = rf"layer {q} of shape \(out, in\) = \(32, 32\), but this model's {q} is \(48, 48\)"
    with pytest.raises(ValueError, match=shapes):
        lora.load_adapter(other, FIXTURE / "lora")
    assert_unchanged(other, before)


# ---- tinylora's format before PEFT's ---------------------------------------------------------------------
def write_legacy_adapter(model, folder, config):
    """The files tinylora wrote before it used PEFT's format (format_version 1)."""
    folder.mkdir()
    arrays = {f"{n}.{kind}": p.numpy() for n, layer in lora.lora_layers(model)
              for kind, p in layer.adapters["default"].named_parameters()}
    save_safetensors(folder / ADAPTER_WEIGHTS_NAME, arrays, {"format": "tinylora-adapter"})
    shapes = {n: [layer.out_features, layer.in_features] for n, layer in lora.lora_layers(model)}
    saved = {"lora_config": config.to_dict(), "base_layers": shapes, "format_version": 1}
    (folder / ADAPTER_CONFIG_NAME).write_text(json.dumps(saved))


@pytest.mark.parametrize("config", [LoraConfig(r=2, init_lora_weights=False),
                                    LoraConfig(r=2, use_dora=True, init_lora_weights=False)],
                         ids=["lora", "dora"])
def test_an_adapter_in_tinylora_format_version_1_still_loads(tmp_path, config):
    model, x = lora.apply_lora(GPT(TINY_GPT, seed=0), config), np.arange(8)[None] % 11
    write_legacy_adapter(model, tmp_path / "old", config)
    fresh = lora.load_adapter(GPT(TINY_GPT, seed=0), tmp_path / "old")
    np.testing.assert_array_equal(fresh(x)[0].data, model(x)[0].data)


def test_saving_a_loaded_version_1_adapter_converts_it_to_peft_format(tmp_path):
    config = LoraConfig(r=2, init_lora_weights=False)
    write_legacy_adapter(lora.apply_lora(GPT(TINY_GPT, seed=0), config), tmp_path / "old", config)
    lora.save_adapter(lora.load_adapter(GPT(TINY_GPT, seed=0), tmp_path / "old"), tmp_path / "new")
    assert json.loads((tmp_path / "new" / ADAPTER_CONFIG_NAME).read_text())["peft_type"] == "LORA"


# ---- PEFT configs tinylora refuses -----------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("fan_in_fan_out", True), ("layer_replication", [[0, 1]]), ("exclude_modules", ["q_proj"]),
    ("peft_type", "IA3"), ("init_lora_weights", "olora"), ("init_lora_weights", "pissa_niter_4"),
    ("lora_bias", True), ("task_type", "SEQ_CLS"), ("use_qalora", True), ("loftq_config", {"loftq_bits": 4}),
    ("a_future_peft_field", 3)])
def test_a_peft_config_field_tinylora_lacks_is_refused_by_name_and_value(tmp_path, field, value):
    folder = tmp_path / "adapter"
    shutil.copytree(FIXTURE / "lora", folder)
    config = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
    config[field] = value
    (folder / ADAPTER_CONFIG_NAME).write_text(json.dumps(config))
    model = tiny_base()
    before = weights(model)
    with pytest.raises(ValueError, match=re.escape(f"{field}={value!r}")):
        lora.load_adapter(model, folder)
    assert_unchanged(model, before)


@pytest.mark.parametrize("field, off", [("exclude_modules", []), ("loftq_config", {}), ("eva_config", None),
                                        ("megatron_core", "megatron.core"), ("revision", "main")])
def test_peft_fields_at_their_off_value_are_accepted(field, off):
    d = {**LoraConfig(r=2).to_peft_dict(), field: off}
    assert LoraConfig.from_peft_dict(d) == LoraConfig(r=2)


def test_a_peft_config_without_target_modules_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="target_modules is null"):
        LoraConfig.from_peft_dict({"peft_type": "LORA", "r": 2, "target_modules": None})


def test_missing_peft_keys_take_peft_defaults():
    config = LoraConfig.from_peft_dict({"target_modules": ["q_proj"]})
    assert (config.r, config.lora_alpha, config.init_lora_weights) == (8, 8, True)
