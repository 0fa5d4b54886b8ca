"""Mixed-adapter batches: model(ids, adapter_names=[...]) equals running each row with its adapter alone
(GPT and Llama, None rows, a layer that lacks an adapter, DoRA), backward gives each adapter the gradient of
its own rows, and bad names are refused before the forward starts."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora import lora
from tinylora.lora import LoraConfig
from tinylora.models import GPT, GPTConfig, Llama, LlamaConfig

TINY_GPT = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
TINY_LLAMA = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16)
IDS = np.array([[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8], [9, 7, 9, 3, 2, 3], [8, 4, 6, 2, 6, 4]])
NAMES = ["a", None, "b", "a"]


def two_adapters(model, b_config=None):
    """Adapters "a" (q, v, every block) and "b" (q and the MLP's first layer, block 1 only), B random."""
    lora.add_adapter(model, "a", LoraConfig(r=2, init_lora_weights=False, seed=1))
    first = "fc_in" if isinstance(model, GPT) else "gate_proj"
    b_config = b_config or LoraConfig(r=3, init_lora_weights=False, seed=2, target_modules=["q_proj", first],
                                      layers_to_transform=1)
    lora.add_adapter(model, "b", b_config)
    return model


def row_alone(model, row, name):
    """Row ``row`` of IDS through the model with adapter ``name`` only (None: the base)."""
    if name is None:
        with lora.disable_adapters(model):
            return model(IDS[row:row + 1])[0].data[0]
    lora.set_adapter(model, name)
    return model(IDS[row:row + 1])[0].data[0]


@pytest.mark.parametrize("make", [lambda: GPT(TINY_GPT), lambda: Llama(TINY_LLAMA, seed=0)],
                         ids=["gpt", "llama"])
def test_each_row_of_a_mixed_batch_equals_that_row_run_with_its_adapter_alone(make):
    model = two_adapters(make())
    mixed = model(IDS, adapter_names=NAMES)[0].data
    alone = np.stack([row_alone(model, row, name) for row, name in enumerate(NAMES)])
    assert np.abs(alone[0] - alone[1]).max() > 1e-3 and np.abs(alone[2] - alone[1]).max() > 1e-3
    np.testing.assert_allclose(mixed, alone, rtol=0, atol=1e-6)


def test_a_batch_with_one_name_for_every_row_is_the_plain_forward_of_that_adapter():
    model = two_adapters(GPT(TINY_GPT))
    lora.set_adapter(model, "b")
    np.testing.assert_array_equal(model(IDS, adapter_names=["b"] * 4)[0].data, model(IDS)[0].data)


def test_the_names_are_cleared_after_the_call_and_after_an_error():
    model = two_adapters(GPT(TINY_GPT))
    model(IDS, adapter_names=NAMES)
    with pytest.raises(ValueError):
        model(IDS, IDS[:1], adapter_names=NAMES)    # targets of the wrong shape: raised inside the block
    assert all(layer.row_adapters is None for _, layer in lora.lora_layers(model))


def test_a_mixed_batch_works_with_dora_adapters():
    model = two_adapters(GPT(TINY_GPT), LoraConfig(r=2, use_dora=True, init_lora_weights=False, seed=3))
    mixed = model(IDS, adapter_names=["b", None, "a", "b"])[0].data
    alone = np.stack([row_alone(model, row, name) for row, name in enumerate(["b", None, "a", "b"])])
    np.testing.assert_allclose(mixed, alone, rtol=0, atol=1e-6)


def test_backward_through_a_mixed_batch_gives_each_adapter_the_gradient_of_its_own_rows():
    model = two_adapters(GPT(TINY_GPT)).to(np.float64)
    weights = np.random.default_rng(0).normal(size=(4, 6, 11))   # a non-uniform upstream gradient
    params = {n: p for n, p in model.named_parameters() if ".adapters." in n}
    for p in params.values():
        p.requires_grad = True
    (model(IDS, adapter_names=NAMES)[0] * weights).sum().backward()
    mixed = {n: p.grad.copy() for n, p in params.items()}
    want = {n: np.zeros_like(p.data) for n, p in params.items()}
    for row, name in enumerate(NAMES):
        if name is None:
            continue
        lora.set_adapter(model, name)
        for p in params.values():
            p.requires_grad, p.grad = True, None
        (model(IDS[row:row + 1])[0] * weights[row:row + 1]).sum().backward()
        for n, p in params.items():
            want[n] += 0 if p.grad is None else p.grad
    assert all(np.abs(g).max() > 0 for g in mixed.values())      # both adapters got a gradient
    for n in params:
        np.testing.assert_allclose(mixed[n], want[n], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("names, error, message", [
    (["a", None, "b"], ValueError, "adapter_names has 3 names for a batch of 4 rows"),
    (["a", None, "c", "a"], ValueError, r"holds 'c', which is no adapter of this GPT; it has \['a', 'b'\]"),
    ("a", TypeError, "adapter_names must be a list"),
    (["a", 1, "b", "a"], TypeError, "adapter_names must be a list"),
])
def test_bad_adapter_names_are_refused_before_the_forward(names, error, message):
    model = two_adapters(GPT(TINY_GPT))
    with pytest.raises(error, match=message):
        model(IDS, adapter_names=names)
    assert all(layer.row_adapters is None for _, layer in lora.lora_layers(model))


def test_a_merged_model_refuses_a_mixed_batch():
    model = lora.merge_lora(two_adapters(GPT(TINY_GPT)))
    with pytest.raises(ValueError, match="needs an unmerged model"):
        model(IDS, adapter_names=NAMES)


def test_an_adapter_on_an_embedding_or_with_modules_to_save_is_refused_in_a_mixed_batch():
    model = two_adapters(GPT(TINY_GPT))
    lora.add_adapter(model, "table", LoraConfig(r=2, target_modules=["wte"]))
    with pytest.raises(ValueError, match=r"'wte' \(LoraEmbedding\) cannot give rows different adapters"):
        model(IDS, adapter_names=["table", None, "a", "a"])
    with pytest.warns(UserWarning, match="modules_to_save adds"):
        lora.add_adapter(model, "head", LoraConfig(r=2, modules_to_save=["lm_head"]))
    with pytest.raises(ValueError, match="'lm_head' is a modules_to_save copy"):
        model(IDS, adapter_names=["head", None, "a", "a"])
    model(IDS, adapter_names=NAMES)       # the other adapters still mix


def test_a_model_without_adapters_refuses_adapter_names_other_than_none():
    with pytest.raises(ValueError, match=r"which is no adapter of this GPT; it has \[\]"):
        GPT(TINY_GPT)(IDS, adapter_names=NAMES)


def test_a_mixed_batch_matches_peft_adapter_names_on_a_tiny_llama(tmp_path):
    peft, torch = pytest.importorskip("peft"), pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = two_adapters(Llama(TINY_LLAMA, seed=0))
    hf = transformers.LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                                  tie_word_embeddings=True, rms_norm_eps=model.config.rms_norm_eps,
                                  rope_theta=model.config.rope_theta, attn_implementation="eager")
    base = transformers.LlamaForCausalLM(hf).eval()
    state = {n: torch.as_tensor(p.numpy()) for n, p in Llama(TINY_LLAMA, seed=0).named_parameters()}
    assert not base.load_state_dict(state, strict=False).unexpected_keys   # lm_head: the tied table
    for name in ("a", "b"):
        lora.save_adapter(model, tmp_path / name, adapter_name=name)
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "a", adapter_name="a")
    theirs.load_adapter(tmp_path / "b", adapter_name="b")
    names = ["__base__" if n is None else n for n in NAMES]
    with torch.no_grad():
        want = theirs.eval()(torch.as_tensor(IDS), adapter_names=names).logits.numpy()
    got = model(IDS, adapter_names=NAMES)[0].data
    assert float(np.abs(got - want).max() / np.abs(want).max()) < 1e-4


@pytest.mark.parametrize("backend", ["fakecupy"], indirect=True)
def test_a_mixed_batch_on_a_device_backend_equals_the_cpu_one(backend):
    from tinylora.backend import asnumpy
    on_cpu = two_adapters(GPT(TINY_GPT))(IDS, adapter_names=NAMES)[0].data
    model = two_adapters(GPT(TINY_GPT).to("cuda"))
    logits = model(IDS, adapter_names=NAMES)[0]
    logits.sum().backward()
    assert {p.device for p in model.parameters()} == {"cuda"}
    np.testing.assert_allclose(asnumpy(logits.data), on_cpu, rtol=0, atol=1e-6)


@pytest.mark.parametrize("use_cache", [True, False], ids=["kv-cache", "no-cache"])
def test_generate_with_adapter_names_decodes_each_row_as_its_adapter_alone_would(use_cache):
    from tinylora.models.generation import generate
    model = two_adapters(Llama(TINY_LLAMA, seed=0))
    prompt = IDS[:, :3]
    mixed = generate(model, prompt, max_new_tokens=6, top_k=1, use_cache=use_cache, adapter_names=NAMES)
    alone = []
    for row, name in enumerate(NAMES):
        if name is None:
            with lora.disable_adapters(model):
                alone.append(generate(model, prompt[row:row + 1], max_new_tokens=6, top_k=1)[0])
        else:
            lora.set_adapter(model, name)
            alone.append(generate(model, prompt[row:row + 1], max_new_tokens=6, top_k=1)[0])
    np.testing.assert_array_equal(mixed, np.stack(alone))
    assert len({tuple(r[3:]) for r in alone}) > 1            # the adapters do change the tokens


def test_generate_refuses_unknown_adapter_names_before_decoding_anything():
    from tinylora.models.generation import generate
    model = two_adapters(GPT(TINY_GPT))
    with pytest.raises(ValueError, match="adapter_names holds 'c', which is no adapter"):
        generate(model, IDS[:, :3], max_new_tokens=0, adapter_names=["a", "c", None, None])
