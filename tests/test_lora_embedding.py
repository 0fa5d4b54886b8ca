"""LoRA on an Embedding: loralib's init (A = 0, B random) and what it implies for the gradients, gradcheck,
merge and unmerge on GPT's wte and Llama's (tied) embed_tokens, every backend, and parity with PEFT."""
import warnings

import numpy as np
import pytest

from tinylora import gradcheck, lora
from tinylora.gpt import GPT, GPTConfig
from tinylora.lora import LoraConfig, LoraEmbedding
from tinylora.models import Llama, LlamaConfig
from tinylora.nn import Embedding, Module
from tinylora.optim import AdamW

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
SMALL_LLAMA = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1)
IDS = np.random.default_rng(0).integers(0, 11, size=(2, 8))
EXACT = dict(rtol=1e-12, atol=1e-12)


def device_of(backend):
    return "cpu" if backend == "numpy" else "cuda"


def table(seed=0, init_lora_weights="gaussian", num_embeddings=7, embedding_dim=5):
    """A float64 LoraEmbedding (7 tokens x 5) with one active adapter of rank 2."""
    layer = LoraEmbedding(Embedding(num_embeddings, embedding_dim, rng=np.random.default_rng(seed),
                                    dtype=np.float64))
    layer.add_adapter("default", LoraConfig(r=2, lora_alpha=4, init_lora_weights=init_lora_weights),
                      np.random.default_rng(seed + 1))
    layer.active_adapter = "default"
    return layer


# ---- 1. loralib's init ------------------------------------------------------------------------------
def test_a_starts_at_zero_and_b_random_so_a_fresh_adapter_changes_no_lookup():
    layer = table()
    adapter = layer.adapters["default"]
    assert adapter.lora_A.shape == (2, 7) and adapter.lora_B.shape == (5, 2)
    assert np.all(adapter.lora_A.data == 0) and np.all(adapter.lora_B.data != 0)
    np.testing.assert_array_equal(layer(IDS % 7).data, layer.base_layer(IDS % 7).data)


@pytest.mark.parametrize("make, target", [(lambda: GPT(TINY, seed=0), "wte"),
                                          (lambda: Llama(SMALL_LLAMA, seed=0), "embed_tokens")])
def test_a_fresh_embedding_adapter_leaves_both_models_logits_exactly_unchanged(make, target):
    base, _ = make()(IDS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tied Llama warns about merging; see the tied-head tests
        adapted, _ = lora.apply_lora(make(), LoraConfig(r=2, target_modules=[target]))(IDS)
    np.testing.assert_array_equal(adapted.data, base.data)


def test_at_step_zero_b_gets_exactly_zero_gradient_and_a_only_in_the_columns_of_tokens_seen():
    """dL/dB = s·Σ_t g_t·A[:, ids_t]ᵀ = 0 while A = 0; dL/dA[:, i] = s·Bᵀ·Σ_{ids_t = i} g_t, non-zero only
    for tokens i that occur (here 1, 3 and 4 of 7)."""
    layer = table()
    ids = np.array([[1, 3, 3, 4]])
    upstream = np.random.default_rng(5).uniform(0.5, 1.5, size=(1, 4, 5))
    layer(ids).backward(upstream)
    adapter = layer.adapters["default"]
    assert np.all(adapter.lora_B.grad == 0)
    seen = np.any(adapter.lora_A.grad != 0, axis=0)
    np.testing.assert_array_equal(np.flatnonzero(seen), [1, 3, 4])
    want = adapter.scaling * adapter.lora_B.data.T @ upstream[0, [1, 2]].sum(axis=0)   # token 3, twice
    np.testing.assert_allclose(adapter.lora_A.grad[:, 3], want, **EXACT)


def test_a_token_never_seen_in_training_keeps_its_row_of_the_table_exactly():
    """With A = 0 a token's column of A moves only when the token occurs, so ΔW's column (the token's row of
    the table update) stays exactly zero for tokens outside the training data, even with weight decay."""
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2, target_modules=["wte"]))
    x = np.random.default_rng(1).integers(0, 8, size=(4, 8))          # tokens 8, 9 and 10 never occur
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        _, loss = model(x, (x + 1) % 8)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    dW = lora.get_delta_weights(model)["wte"]                          # (n_embd, vocab)
    assert np.all(dW[:, 8:] == 0)
    assert np.all(np.abs(dW[:, :8]).max(axis=0) > 0)


# ---- 2. gradients --------------------------------------------------------------------------------------
def test_lora_embedding_passes_gradcheck_in_float64_for_a_and_b(backend):
    """A random too (init_lora_weights=False), so both gradients are non-trivial; ids repeat (their
    gradients add); gradcheck draws a non-uniform upstream gradient."""
    layer = table(init_lora_weights=False).to(device_of(backend))
    adapter = layer.adapters["default"]
    ids = np.array([[0, 2, 2, 6], [5, 0, 1, 2]])
    assert gradcheck(lambda *_: layer(ids), adapter.lora_A, adapter.lora_B)


# ---- 3. merge and unmerge ---------------------------------------------------------------------------
def test_merging_adds_the_transposed_update_to_the_table_and_unmerging_restores_it(backend):
    layer = table(init_lora_weights=False).to(device_of(backend))
    W0 = layer.base_layer.weight.numpy()
    unmerged = layer(IDS % 7).numpy()
    layer.merge()
    adapter = layer.adapters["default"]
    want = W0 + adapter.scaling * (adapter.lora_B.numpy() @ adapter.lora_A.numpy()).T    # (V, D)
    np.testing.assert_allclose(layer.base_layer.weight.numpy(), want, **EXACT)
    np.testing.assert_allclose(layer(IDS % 7).numpy(), unmerged, **EXACT)
    layer.unmerge()
    np.testing.assert_allclose(layer.base_layer.weight.numpy(), W0, **EXACT)


def test_gpt_with_an_adapted_wte_gives_the_same_logits_merged_and_unmerged(backend):
    model = GPT(TINY, seed=0).to(np.float64).to(device_of(backend))
    lora.apply_lora(model, LoraConfig(r=2, target_modules=["wte", "q_proj"], init_lora_weights=False))
    unmerged = model(IDS)[0].numpy()
    lora.merge_lora(model)
    np.testing.assert_allclose(model(IDS)[0].numpy(), unmerged, rtol=1e-10, atol=1e-10)
    lora.unmerge_lora(model)
    np.testing.assert_allclose(model(IDS)[0].numpy(), unmerged, **EXACT)


def test_merge_and_unload_puts_the_plain_embedding_back_with_the_update_in_it():
    model = GPT(TINY, seed=0).to(np.float64)
    lora.apply_lora(model, LoraConfig(r=2, target_modules=["wte"], init_lora_weights=False))
    adapted = model(IDS)[0].numpy()
    lora.merge_and_unload(model)
    assert type(model.wte) is Embedding
    np.testing.assert_allclose(model(IDS)[0].numpy(), adapted, rtol=1e-10, atol=1e-10)


# ---- 4. the tied head (Llama) ---------------------------------------------------------------------------
def tied_llama():
    model = Llama(SMALL_LLAMA, seed=0).to(np.float64)
    W0 = model.model.embed_tokens.weight.numpy()
    with pytest.warns(UserWarning, match=r"tied to 'lm_head': unmerged, the adapter changes only the lookup"):
        lora.apply_lora(model, LoraConfig(r=2, target_modules=["embed_tokens"], init_lora_weights=False))
    return model, W0


def test_unmerged_the_tied_head_keeps_w0_while_the_lookup_is_adapted():
    """As in PEFT: the adapter wraps the lookup only; lm_head shares the frozen table and computes with W0."""
    model, W0 = tied_llama()
    assert model.lm_head.weight is model.model.embed_tokens.base_layer.weight
    np.testing.assert_array_equal(model.lm_head.weight.numpy(), W0)
    hidden = model.model(IDS).numpy()                                   # (B, T, C)
    np.testing.assert_allclose(model(IDS)[0].numpy(), hidden @ W0.T, **EXACT)


def test_merging_a_tied_table_changes_the_head_too_and_unmerging_restores_both():
    model, W0 = tied_llama()
    unmerged = model(IDS)[0].numpy()
    lora.merge_lora(model)
    dW = lora.get_delta_weights(model)["model.embed_tokens"]             # (C, V)
    np.testing.assert_allclose(model.lm_head.weight.numpy(), W0 + dW.T, **EXACT)
    hidden = model.model(IDS).numpy()
    np.testing.assert_allclose(model(IDS)[0].numpy(), hidden @ (W0 + dW.T).T, rtol=1e-10, atol=1e-10)
    assert np.abs(model(IDS)[0].numpy() - unmerged).max() > 1e-3
    lora.unmerge_lora(model)
    np.testing.assert_allclose(model(IDS)[0].numpy(), unmerged, rtol=1e-10, atol=1e-10)


# ---- 5. finding the targets -------------------------------------------------------------------------------
def test_embeddings_are_adapted_when_named_and_never_by_all_linear():
    model = Llama(SMALL_LLAMA, seed=0)
    named = lora.find_targets(model, LoraConfig(r=2, target_modules=["embed_tokens", "q_proj"]))
    assert named == ["model.embed_tokens", "model.layers.0.self_attn.q_proj"]
    every = lora.find_targets(model, LoraConfig(r=2, target_modules="all-linear"))
    assert "model.embed_tokens" not in every and "lm_head" not in every


def test_dora_on_an_embedding_is_refused_before_anything_changes():
    model = GPT(TINY, seed=0)
    with pytest.raises(ValueError, match=r"target 'wte' is an Embedding; LoRA on an Embedding supports"):
        lora.apply_lora(model, LoraConfig(r=2, target_modules=["wte", "q_proj"], use_dora=True))
    assert lora.lora_layers(model) == [] and type(model.wte) is Embedding


def test_an_embedding_adapter_is_counted_and_only_it_trains():
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2, target_modules=["wte"]))
    trainable, _ = lora.count_parameters(model)
    assert trainable == 2 * (11 + 8)                                    # A (2, 11) + B (8, 2)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "wte.adapters.default.lora_A", "wte.adapters.default.lora_B"}


def test_an_embedding_adapter_takes_part_in_a_weighted_merge_like_a_linear_one():
    model = GPT(TINY, seed=0).to(np.float64)
    for seed, name in enumerate("ab"):
        lora.add_adapter(model, name, LoraConfig(r=2, target_modules=["wte"], init_lora_weights=False,
                                                 seed=seed))
    lora.add_weighted_adapter(model, ["a", "b"], [1.0, -2.0], "mix", combination_type="cat")
    got = lora.get_delta_weights(model, "mix")["wte"]
    want = lora.get_delta_weights(model, "a")["wte"] - 2 * lora.get_delta_weights(model, "b")["wte"]
    np.testing.assert_allclose(got, want, **EXACT)


def test_an_embedding_adapter_saves_and_loads_with_the_same_update(tmp_path):
    model = lora.apply_lora(GPT(TINY, seed=0).to(np.float64),
                            LoraConfig(r=2, target_modules=["wte", "q_proj"], init_lora_weights=False))
    lora.save_adapter(model, tmp_path)
    fresh = lora.load_adapter(GPT(TINY, seed=0).to(np.float64), tmp_path)
    assert isinstance(fresh.wte, LoraEmbedding)
    np.testing.assert_array_equal(lora.get_delta_weights(fresh)["wte"], lora.get_delta_weights(model)["wte"])
    np.testing.assert_array_equal(fresh(IDS)[0].numpy(), model(IDS)[0].numpy())


# ---- 6. parity with PEFT ---------------------------------------------------------------------------------
@pytest.mark.slow  # importing torch and peft
def test_lookup_update_and_merged_table_match_peft():
    """PEFT's lora.Embedding with the same W0, A (r, V) and B (D, r): the same lookups, its get_delta_weight
    (V, D) is our ΔWᵀ, and the same merged table."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = torch.nn.Embedding(11, 6)

        def forward(self, ids):
            return self.embed_tokens(ids)

    torch.manual_seed(0)
    reference = peft.get_peft_model(Tokens().double(), peft.LoraConfig(
        r=3, lora_alpha=6, target_modules=["embed_tokens"], init_lora_weights=False))
    theirs = reference.base_model.model.embed_tokens

    class Ours(Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = Embedding(11, 6, dtype=np.float64)

    ours = lora.apply_lora(Ours(), LoraConfig(r=3, lora_alpha=6, target_modules=["embed_tokens"]))
    layer = ours.embed_tokens
    layer.base_layer.weight.data = theirs.base_layer.weight.detach().numpy().copy()
    layer.adapters["default"].lora_A.data = theirs.lora_embedding_A["default"].detach().numpy().copy()
    layer.adapters["default"].lora_B.data = theirs.lora_embedding_B["default"].detach().numpy().copy()
    ids = np.random.default_rng(0).integers(0, 11, size=(3, 5))
    with torch.no_grad():
        np.testing.assert_allclose(layer(ids).numpy(), reference(torch.from_numpy(ids)).numpy(), **EXACT)
        want = theirs.get_delta_weight("default").numpy()                # (V, D)
        np.testing.assert_allclose(layer.delta_weight().T, want, **EXACT)
        reference.merge_adapter()
        layer.merge()
        np.testing.assert_allclose(layer.base_layer.weight.numpy(), theirs.base_layer.weight.numpy(), **EXACT)


@pytest.mark.slow  # importing torch, transformers and peft
def test_peft_also_adapts_only_the_lookup_of_a_tied_table_and_merging_changes_its_head():
    """The reference behaviour the tied-head tests above match, on transformers' tiny tied Llama."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    base = transformers.LlamaForCausalLM(config).double()
    W0 = base.lm_head.weight.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns about the tied table, as tinylora does
        model = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["embed_tokens"],
                                                          init_lora_weights=False))
        table = model.base_model.model.model.embed_tokens
        ids = torch.from_numpy(IDS % 16)
        with torch.no_grad():
            hidden = model.base_model.model.model(ids).last_hidden_state
            assert torch.equal(model.base_model.model.lm_head.weight, W0)
            torch.testing.assert_close(model(ids).logits, hidden @ W0.T)
            model.merge_adapter()
            merged = W0 + table.get_delta_weight("default")                  # (V, D)
            torch.testing.assert_close(model.base_model.model.lm_head.weight, merged)
