"""modules_to_save: a frozen original and a trainable copy per adapter, switched with the adapter, saved
under PEFT's key names, counted as PEFT counts, and the same as PEFT's on the committed tiny Llama."""
from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pytest

from tinylora import load_pretrained, lora
from tinylora.io import load_safetensors
from tinylora.lora import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, LoraConfig
from tinylora.lora.modules_to_save import ModulesToSaveWrapper
from tinylora.models import GPT, GPTConfig

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "peft_tiny"
TINY_GPT = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
IDS = np.array([[3, 1, 4, 1, 5, 9, 2, 6], [5, 3, 5, 8, 9, 7, 9, 3]])
HEAD = LoraConfig(r=2, modules_to_save=["lm_head"], init_lora_weights=False)


def with_head(config=HEAD, name="default", model=None):
    """A tiny GPT with an adapter that saves lm_head, its copy moved off the original."""
    model = model or GPT(TINY_GPT)
    with pytest.warns(UserWarning, match="modules_to_save adds"):
        lora.add_adapter(model, name, config)
    model.lm_head.modules_to_save[name].weight.data += 0.5
    return model


def logits(model):
    return model(IDS)[0].data


def test_the_copy_trains_and_the_original_stays_frozen():
    model = with_head()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n in trainable if n.startswith("lm_head")] == ["lm_head.modules_to_save.default.weight"]
    assert not model.lm_head.original_module.weight.requires_grad


def test_the_copy_computes_while_its_adapter_is_active_and_the_original_when_disabled():
    plain = logits(GPT(TINY_GPT))
    model = with_head()
    assert np.abs(logits(model) - plain).max() > 0.1
    with lora.disable_adapters(model):
        np.testing.assert_array_equal(logits(model), plain)   # the LoRA update and the copy both off
    assert np.abs(logits(model) - plain).max() > 0.1


def test_switching_to_an_adapter_without_a_copy_uses_the_original_module():
    model = with_head()
    lora.add_adapter(model, "plain", LoraConfig(r=2, seed=1))   # B = 0, no modules_to_save
    lora.set_adapter(model, "plain")
    np.testing.assert_array_equal(logits(model), logits(GPT(TINY_GPT)))
    assert model.lm_head.active_adapter is None
    lora.set_adapter(model, "default")
    assert model.lm_head.module_in_use() is model.lm_head.modules_to_save["default"]
    assert model.lm_head.modules_to_save["default"].weight.requires_grad


def test_two_adapters_keep_two_copies_and_each_trains_only_while_active():
    model = with_head()
    with_head(name="other", model=model)
    lora.set_adapter(model, "other")
    copies = model.lm_head.modules_to_save
    assert copies["other"].weight.requires_grad and not copies["default"].weight.requires_grad
    assert copies["other"].weight is not copies["default"].weight


def test_print_trainable_parameters_counts_the_copy_as_peft_does(capsys):
    model = with_head()
    lora.print_trainable_parameters(model)
    lora_size = 2 * 2 * 2 * (8 + 8)                 # 2 blocks x (q, v) x r 2 x (in 8 + out 8) = 128
    head = 11 * 8                                    # the copy of lm_head (V x C) = 88
    base = sum(p.size for p in GPT(TINY_GPT).parameters())
    trainable, total = lora_size + head, base + lora_size + head
    percent = 100 * trainable / total
    want = f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {percent:.4f}"
    assert capsys.readouterr().out.strip() == want


def test_adding_modules_to_save_warns_with_the_parameters_and_megabytes_they_add():
    with pytest.warns(UserWarning, match=r"modules_to_save adds 88 parameters \(0.000352 MB\) to an adapter "
                                         r"of 128: \['lm_head'\]"):
        lora.apply_lora(GPT(TINY_GPT), HEAD)


def test_the_copy_is_saved_under_peft_key_names_and_loads_back(tmp_path):
    model = with_head()
    lora.save_adapter(model, tmp_path)
    arrays, _ = load_safetensors(tmp_path / ADAPTER_WEIGHTS_NAME)
    assert "base_model.model.lm_head.weight" in arrays and len(arrays) == 9   # 8 LoRA factors + the head
    np.testing.assert_array_equal(arrays["base_model.model.lm_head.weight"],
                                  model.lm_head.modules_to_save["default"].weight.numpy())
    assert json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())["modules_to_save"] == ["lm_head"]
    with pytest.warns(UserWarning, match="modules_to_save adds"):
        loaded = lora.load_adapter(GPT(TINY_GPT), tmp_path)
    np.testing.assert_array_equal(logits(loaded), logits(model))


def test_a_saved_file_without_the_copy_is_refused_before_the_model_changes(tmp_path):
    lora.save_adapter(lora.apply_lora(GPT(TINY_GPT), LoraConfig(r=2)), tmp_path)
    saved = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    (tmp_path / ADAPTER_CONFIG_NAME).write_text(json.dumps({**saved, "modules_to_save": ["ln_f"]}))
    model = GPT(TINY_GPT)
    with pytest.raises(ValueError, match=r"modules_to_save needs the tensors \['ln_f.bias', 'ln_f.weight'\]"):
        lora.load_adapter(model, tmp_path)
    assert not lora.lora_layers(model) and not isinstance(model.ln_f, ModulesToSaveWrapper)


def test_a_key_selects_every_module_whose_name_ends_with_it_as_in_peft():
    with pytest.warns(UserWarning, match=r"\['blocks.0.ln_1', 'blocks.1.ln_1'\]"):
        model = lora.apply_lora(GPT(TINY_GPT), LoraConfig(r=2, modules_to_save=["ln_1"]))
    assert all(isinstance(block.ln_1, ModulesToSaveWrapper) for block in model.blocks)


@pytest.mark.parametrize("keys, message", [
    (["head"], None), (["no_such_module"], "'no_such_module' matches no module of this GPT"),
    (["attn"], "'blocks.0.attn' holds the LoRA target 'blocks.0.attn.q_proj'")])
def test_a_module_that_does_not_exist_or_holds_a_target_is_refused_before_anything_changes(keys, message):
    model = GPT(TINY_GPT)
    if message is None:      # "head" ends "lm_head": PEFT's rule is a plain suffix
        with pytest.warns(UserWarning, match=r"\['lm_head'\]"):
            lora.apply_lora(model, LoraConfig(r=2, modules_to_save=keys))
        return
    with pytest.raises(ValueError, match=message):
        lora.apply_lora(model, LoraConfig(r=2, modules_to_save=keys))
    assert not lora.lora_layers(model)
    assert not any(isinstance(m, ModulesToSaveWrapper) for m in model.modules())


def test_a_modules_to_save_value_of_the_wrong_type_is_refused_by_lora_config():
    with pytest.raises(TypeError, match="modules_to_save must be a list of module names, got 'lm_head'"):
        LoraConfig(modules_to_save="lm_head")


def test_merge_and_unload_keeps_the_trained_copy_and_unload_the_original():
    model = with_head()
    want = logits(model)
    merged = lora.merge_and_unload(model)
    assert not isinstance(merged.lm_head, ModulesToSaveWrapper)
    np.testing.assert_allclose(logits(merged), want, rtol=1e-5, atol=1e-6)
    plain = lora.unload(with_head())
    np.testing.assert_array_equal(logits(plain), logits(GPT(TINY_GPT)))


def test_delete_adapter_removes_its_copy():
    model = with_head()
    lora.add_adapter(model, "plain", LoraConfig(r=2, seed=1))
    lora.set_adapter(model, "plain")
    lora.delete_adapter(model, "default")
    assert list(model.lm_head.modules_to_save) == []


# ---- parity with PEFT on the committed tiny Llama ------------------------------------------------------
def tiny_base():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # no tokenizer; the modules_to_save warning
        return load_pretrained(FIXTURE / "base")[0]


def test_a_peft_adapter_with_modules_to_save_gives_peft_logits_and_parameter_count(tmp_path, capsys):
    peft, torch = pytest.importorskip("peft"), pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    base = transformers.LlamaForCausalLM.from_pretrained(FIXTURE / "base", attn_implementation="eager").eval()
    torch.manual_seed(0)
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                             modules_to_save=["lm_head", "norm"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # PEFT's note on the tied lm_head
        theirs = peft.get_peft_model(base, config)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if ".modules_to_save.default." in name:
                p.add_(0.1 * torch.randn_like(p))
    theirs.print_trainable_parameters()
    printed = capsys.readouterr().out.strip()
    theirs.save_pretrained(tmp_path)
    with torch.no_grad():
        want = theirs.eval()(torch.as_tensor(IDS)).logits.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lora.load_adapter(tiny_base(), tmp_path)
    assert sorted(n for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)) == sorted(
        n.removeprefix("base_model.model.") for n, m in theirs.named_modules()
        if type(m).__name__ == "ModulesToSaveWrapper")
    got = model(IDS)[0].data
    assert float(np.abs(got - want).max() / np.abs(want).max()) < 1e-4
    lora.print_trainable_parameters(model)
    assert capsys.readouterr().out.strip() == printed
    lora.save_adapter(model, tmp_path / "again")             # and back: tinylora's file loads in PEFT
    base = transformers.LlamaForCausalLM.from_pretrained(FIXTURE / "base", attn_implementation="eager").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = peft.PeftModel.from_pretrained(base, tmp_path / "again").eval()
    with torch.no_grad():
        back = again(torch.as_tensor(IDS)).logits.numpy()
    assert float(np.abs(back - want).max() / np.abs(want).max()) < 1e-4


@pytest.mark.parametrize("backend", ["fakecupy"], indirect=True)
def test_the_copy_lives_on_the_device_of_its_module_and_saves_as_host_arrays(backend, tmp_path):
    model = with_head(model=GPT(TINY_GPT).to("cuda"))
    assert model.lm_head.modules_to_save["default"].weight.device == "cuda"
    lora.save_adapter(model, tmp_path)
    arrays, _ = load_safetensors(tmp_path / ADAPTER_WEIGHTS_NAME)
    assert type(arrays["base_model.model.lm_head.weight"]) is np.ndarray
