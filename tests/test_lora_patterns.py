"""Per-layer settings: rank_pattern and alpha_pattern (PEFT's matching rule), layers_to_transform and
layers_pattern on GPT (blocks.N) and Llama (model.layers.N); saved with PEFT's keys, refused when wrong,
and equal to PEFT's own adapters on the committed tiny Llama (tests/fixtures/peft_tiny/base)."""
from __future__ import annotations

import json
import pathlib
import warnings
from dataclasses import replace

import numpy as np
import pytest

from tinylora import load_pretrained, lora
from tinylora.lora import ADAPTER_CONFIG_NAME, LoraConfig
from tinylora.lora.patterns import layer_index, pattern_key
from tinylora.models import GPT, GPTConfig, Llama, LlamaConfig

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "peft_tiny"
TINY_GPT = GPTConfig(vocab_size=11, block_size=8, n_layer=3, n_head=2, n_embd=8)
TINY_LLAMA = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16)
IDS = np.array([[3, 1, 4, 1, 5, 9, 2, 6], [5, 3, 5, 8, 9, 7, 9, 3]])


def ranks(model, adapter="default"):
    """{layer: (r, scaling)} of ``adapter``."""
    return {n: (layer.adapters[adapter].lora_A.shape[0], layer.adapters[adapter].scaling)
            for n, layer in lora.lora_layers(model) if adapter in layer.adapters}


# ---- the matching rules ----------------------------------------------------------------------------
def test_a_pattern_key_matches_a_name_suffix_at_a_dot_and_the_first_matching_key_wins():
    name = "model.layers.1.self_attn.q_proj"
    assert pattern_key(["q_proj"], name) == "q_proj"
    assert pattern_key(["proj"], name) is None            # "proj" ends the name, but not at a dot
    assert pattern_key([r"layers\.1\..*", "q_proj"], name) == r"layers\.1\..*"
    assert pattern_key(["q_proj", r"layers\.1\..*"], name) == "q_proj"
    assert pattern_key(["layers.0.self_attn.q_proj"], name) is None


def test_the_block_index_is_read_after_a_named_segment_or_after_layers_pattern():
    assert layer_index("model.layers.12.mlp.up_proj") == 12
    assert layer_index("blocks.2.attn.q_proj") == 2
    assert layer_index("blocks.2.attn.q_proj", "blocks") == 2
    assert layer_index("model.layers.2.mlp.up_proj", ["h", "layers"]) == 2
    assert layer_index("model.layers.2.mlp.up_proj", "blocks") is None
    assert layer_index("lm_head") is None


def test_rank_pattern_and_alpha_pattern_set_each_layers_r_and_scaling_on_gpt():
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], rank_pattern={"v_proj": 2},
                        alpha_pattern={r"blocks\.0\.attn\.q_proj": 2})
    got = ranks(lora.apply_lora(GPT(TINY_GPT), config))
    assert got["blocks.0.attn.q_proj"] == (4, 0.5)   # α 2 (pattern) / r 4
    assert got["blocks.1.attn.q_proj"] == (4, 2.0)   # α 8 / r 4
    assert got["blocks.0.attn.v_proj"] == (2, 4.0)   # α 8 / r 2 (pattern)


def test_rslora_scales_each_layer_by_its_own_rank():
    config = LoraConfig(r=4, lora_alpha=8, use_rslora=True, rank_pattern={"v_proj": 1})
    got = ranks(lora.apply_lora(GPT(TINY_GPT), config))
    assert got["blocks.0.attn.q_proj"] == (4, 4.0) and got["blocks.0.attn.v_proj"] == (1, 8.0)


@pytest.mark.parametrize("layers, want", [(1, [1]), ([0, 2], [0, 2])])
def test_layers_to_transform_adapts_only_those_gpt_blocks(layers, want):
    model = lora.apply_lora(GPT(TINY_GPT), LoraConfig(r=2, layers_to_transform=layers))
    assert sorted({layer_index(n) for n in ranks(model)}) == want
    assert len(ranks(model)) == 2 * len(want)        # q_proj and v_proj of each


def test_layers_to_transform_with_layers_pattern_adapts_those_llama_layers():
    config = LoraConfig(r=2, target_modules=["q_proj", "down_proj"], layers_to_transform=[2],
                        layers_pattern="layers")
    assert sorted(ranks(lora.apply_lora(Llama(TINY_LLAMA, seed=0), config))) == [
        "model.layers.2.mlp.down_proj", "model.layers.2.self_attn.q_proj"]


def test_all_linear_with_layers_to_transform_keeps_the_head_out():
    model = lora.apply_lora(Llama(TINY_LLAMA, seed=0), LoraConfig(r=2, target_modules="all-linear",
                                                                  layers_to_transform=0))
    assert len(ranks(model)) == 7 and all(n.startswith("model.layers.0.") for n in ranks(model))


# ---- saving and loading ------------------------------------------------------------------------------
def test_per_layer_settings_survive_a_save_and_load_with_peft_keys(tmp_path):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc_in"],
                        rank_pattern={"fc_in": 1}, alpha_pattern={"v_proj": 3}, layers_to_transform=[0, 2],
                        layers_pattern="blocks", init_lora_weights=False)
    model = lora.apply_lora(GPT(TINY_GPT), config)
    lora.save_adapter(model, tmp_path)
    saved = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    assert (saved["rank_pattern"], saved["alpha_pattern"], saved["layers_to_transform"],
            saved["layers_pattern"]) == ({"fc_in": 1}, {"v_proj": 3}, [0, 2], "blocks")
    loaded = lora.load_adapter(GPT(TINY_GPT), tmp_path)
    assert ranks(loaded) == ranks(model)
    assert loaded.peft_config["default"] == replace(config, target_modules=("fc_in", "q_proj", "v_proj"))
    np.testing.assert_array_equal(loaded(IDS)[0].data, model(IDS)[0].data)


# ---- bad values: a clear error, nothing changed --------------------------------------------------------
@pytest.mark.parametrize("fields, error, message", [
    ({"rank_pattern": {"k_proj": 2}}, ValueError, "rank_pattern key 'k_proj' matches none"),
    ({"alpha_pattern": {"blocks.7.attn.q_proj": 2}}, ValueError, "alpha_pattern key"),
    ({"rank_pattern": {"q_proj": 9}}, ValueError, r"r=9 \(rank_pattern\['q_proj'\]\) is larger than min"),
    ({"layers_to_transform": [1, 3]}, ValueError, r"no block \[3\] among its targets; the indices are 0..2"),
    ({"layers_to_transform": [0], "layers_pattern": "layers"}, ValueError, "no target has a block index"),
])
def test_a_bad_per_layer_setting_is_refused_before_the_model_changes(fields, error, message):
    model = GPT(TINY_GPT)
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    with pytest.raises(error, match=message):
        lora.apply_lora(model, LoraConfig(r=2, **fields))
    assert not lora.lora_layers(model)
    assert all(np.array_equal(p.numpy(), before[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize("fields, error, message", [
    ({"rank_pattern": {"q_proj": 2.5}}, ValueError, r"rank_pattern\['q_proj'\] must be an int >= 1, got 2.5"),
    ({"rank_pattern": ["q_proj", 2]}, TypeError, "rank_pattern must be a dict"),
    ({"alpha_pattern": {"q_proj": -1}}, ValueError, "must be a number > 0, got -1"),
    ({"rank_pattern": {"q_proj(": 2}}, ValueError, "not a valid regex"),
    ({"layers_to_transform": "1"}, TypeError, "layers_to_transform must be an int >= 0"),
    ({"layers_to_transform": [-1]}, TypeError, "layers_to_transform must be an int >= 0"),
    ({"layers_to_transform": []}, TypeError, "non-empty list"),
    ({"layers_pattern": "blocks"}, ValueError, "needs layers_to_transform too"),
    ({"layers_pattern": 3, "layers_to_transform": 0}, TypeError, "layers_pattern must be a name"),
    ({"target_modules": r".*q_proj", "layers_to_transform": 0}, ValueError, "regex target_modules"),
])
def test_a_per_layer_field_of_the_wrong_type_or_value_is_refused_by_lora_config(fields, error, message):
    with pytest.raises(error, match=message):
        LoraConfig(r=2, **fields)


def test_a_peft_file_with_a_rank_pattern_key_that_matches_nothing_is_refused_before_loading(tmp_path):
    lora.save_adapter(lora.apply_lora(GPT(TINY_GPT), LoraConfig(r=2)), tmp_path)
    saved = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    (tmp_path / ADAPTER_CONFIG_NAME).write_text(json.dumps({**saved, "rank_pattern": {"o_proj": 1}}))
    model = GPT(TINY_GPT)
    with pytest.raises(ValueError, match="rank_pattern key 'o_proj' matches none"):
        lora.load_adapter(model, tmp_path)
    assert not lora.lora_layers(model)


# ---- parity with PEFT on the committed tiny Llama -------------------------------------------------------
PEFT_CONFIGS = {
    "rank_and_alpha": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                           rank_pattern={"v_proj": 2, r"layers\.1\.mlp\.up_proj": 6},
                           alpha_pattern={"q_proj": 3}),
    "layers_to_transform": dict(r=2, lora_alpha=4, target_modules=["q_proj", "o_proj", "down_proj"],
                                layers_to_transform=[1], rank_pattern={"o_proj": 3}),
    "rslora_patterns": dict(r=4, lora_alpha=8, use_rslora=True, target_modules=["k_proj", "gate_proj"],
                            rank_pattern={"gate_proj": 1}, alpha_pattern={"k_proj": 2},
                            layers_to_transform=0, layers_pattern="layers"),
}


def tiny_base():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the fixture has no tokenizer
        return load_pretrained(FIXTURE / "base")[0]


def relative_error(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def peft_llama(peft, torch, transformers, config):
    base = transformers.LlamaForCausalLM.from_pretrained(FIXTURE / "base", attn_implementation="eager")
    torch.manual_seed(0)
    return peft.get_peft_model(base.eval(), peft.LoraConfig(init_lora_weights=False, **config)).eval()


@pytest.mark.parametrize("name", sorted(PEFT_CONFIGS))
def test_an_adapter_peft_wrote_with_per_layer_settings_gives_peft_logits(tmp_path, name):
    peft, torch = pytest.importorskip("peft"), pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    theirs = peft_llama(peft, torch, transformers, PEFT_CONFIGS[name])
    theirs.save_pretrained(tmp_path)
    with torch.no_grad():
        want = theirs(torch.as_tensor(IDS)).logits.numpy()
    model = lora.load_adapter(tiny_base(), tmp_path)
    peft_ranks = {n.removeprefix("base_model.model."): m.r["default"] for n, m in theirs.named_modules()
                  if hasattr(m, "lora_A") and "default" in m.lora_A}
    assert {n: r for n, (r, _) in ranks(model).items()} == peft_ranks
    base = tiny_base()(IDS)[0].data
    assert relative_error(want, base) > 1e-2              # the adapter moves the logits
    assert relative_error(model(IDS)[0].data, want) < 1e-4


@pytest.mark.parametrize("name", sorted(PEFT_CONFIGS))
def test_an_adapter_tinylora_wrote_with_per_layer_settings_gives_the_same_logits_in_peft(tmp_path, name):
    peft, torch = pytest.importorskip("peft"), pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = lora.apply_lora(tiny_base(), LoraConfig(init_lora_weights=False, **PEFT_CONFIGS[name]))
    lora.save_adapter(model, tmp_path)
    base = transformers.LlamaForCausalLM.from_pretrained(FIXTURE / "base", attn_implementation="eager")
    theirs = peft.PeftModel.from_pretrained(base.eval(), tmp_path).eval()
    with torch.no_grad():
        got = theirs(torch.as_tensor(IDS)).logits.numpy()
    assert relative_error(model(IDS)[0].data, tiny_base()(IDS)[0].data) > 1e-2
    assert relative_error(got, model(IDS)[0].data) < 1e-4
