"""The KV cache and generate(), for GPT and Llama: cached == uncached, sampling, EOS, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora import asnumpy, no_grad
from tinylora.models import GPT, KVCache, Llama, LlamaConfig, generate
from tinylora.models.generation import sample_next
from tinylora.models.gpt import GPTConfig

MODELS = {
    "gpt": lambda: GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8), seed=0),
    "llama": lambda: Llama(LlamaConfig(vocab_size=11, hidden_size=16, intermediate_size=24,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                       max_position_embeddings=16), seed=0),
}
EACH_MODEL = pytest.mark.parametrize("kind", sorted(MODELS))


def ids(shape, vocab=11, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


def build(kind, backend="numpy"):
    model = MODELS[kind]()
    return model if backend == "numpy" else model.to("cuda")


# ---- the cache gives the same logits --------------------------------------------------------
@EACH_MODEL
@pytest.mark.parametrize("prefill", [1, 5])
def test_cached_logits_equal_the_full_forward_at_every_position(kind, prefill, backend):
    model = build(kind, backend)
    x = ids((2, 12))
    full = asnumpy(model(x)[0].data)
    with no_grad():
        cache = model.new_cache(2, 12)
        steps = [model(x[:, :prefill], cache=cache)[0].data]
        steps += [model(x[:, t:t + 1], cache=cache)[0].data for t in range(prefill, 12)]
    assert cache.length == 12
    np.testing.assert_allclose(np.concatenate([asnumpy(s) for s in steps], axis=1), full,
                               rtol=1e-5, atol=1e-5)


@EACH_MODEL
def test_a_chunk_after_the_cache_equals_the_full_forward(kind):
    model = build(kind)
    x = ids((1, 10))
    with no_grad():
        cache = model.new_cache(1)
        model(x[:, :6], cache=cache)
        chunk = model(x[:, 6:], cache=cache)[0].data  # four queries over ten keys at once
    np.testing.assert_allclose(chunk, model(x)[0].data[:, 6:], rtol=1e-5, atol=1e-5)


@EACH_MODEL
def test_greedy_generation_with_the_cache_equals_it_without(kind, backend):
    model = build(kind, backend)
    prompt = ids((2, 3))
    cached = model.generate(prompt, 12, temperature=0)
    uncached = model.generate(prompt, 12, temperature=0, use_cache=False)
    assert cached.shape == (2, 15)
    np.testing.assert_array_equal(asnumpy(cached), asnumpy(uncached))


@EACH_MODEL
def test_sampling_is_reproducible_with_a_seed_and_the_same_with_or_without_cache(kind):
    model = build(kind)
    prompt = ids((2, 2))
    a = model.generate(prompt, 10, top_k=5, top_p=0.9, seed=3)
    b = model.generate(prompt, 10, top_k=5, top_p=0.9, seed=3, use_cache=False)
    c = model.generate(prompt, 10, top_k=5, top_p=0.9, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@EACH_MODEL
def test_top_k_one_and_a_tiny_top_p_are_greedy(kind):
    model = build(kind)
    prompt = ids((1, 3))
    greedy = model.generate(prompt, 8, temperature=0)
    np.testing.assert_array_equal(model.generate(prompt, 8, top_k=1, seed=1), greedy)
    np.testing.assert_array_equal(model.generate(prompt, 8, top_p=1e-6, seed=1), greedy)


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32))
    rng = np.random.default_rng(0)
    drawn = {int(sample_next(logits, 1.0, None, 0.75, rng)[0, 0]) for _ in range(300)}
    assert drawn == {0, 1}  # 0.5 < 0.75 <= 0.5 + 0.3
    drawn = {int(sample_next(logits, 1.0, None, 0.8, rng)[0, 0]) for _ in range(300)}
    assert drawn == {0, 1}  # reached exactly: the third is not needed
    drawn = {int(sample_next(logits, 1.0, 3, None, rng)[0, 0]) for _ in range(300)}
    assert drawn == {0, 1, 2}


@EACH_MODEL
def test_generation_stops_when_every_row_has_emitted_eos_and_finished_rows_repeat_it(kind):
    model = build(kind)
    prompt = ids((2, 2))
    free = model.generate(prompt, 10, temperature=0)
    eos = int(free[0, 4])  # row 0 emits it as its third new token
    out = model.generate(prompt, 10, temperature=0, eos_token_id=eos)
    first = [int(np.argmax(row[2:] == eos)) if (row[2:] == eos).any() else None for row in out]
    assert first[0] <= 2
    for row, f in zip(out, first):
        if f is not None:
            assert (row[2 + f:] == eos).all()
    if all(f is not None for f in first):
        assert out.shape[1] == 2 + max(first) + 1  # stopped once the last row finished
    np.testing.assert_array_equal(out[:, :2 + first[0] + 1], free[:, :2 + first[0] + 1])


@EACH_MODEL
def test_generate_restores_training_mode_and_records_no_graph(kind):
    model = build(kind).train()
    model.generate(ids((1, 2)), 3, seed=0)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


# ---- context length -------------------------------------------------------------------------
def test_gpt_generate_crops_to_block_size_as_before_with_or_without_cache():
    model = build("gpt")
    prompt = ids((1, 14))
    cached = model.generate(prompt, 10, temperature=0)
    np.testing.assert_array_equal(cached, model.generate(prompt, 10, temperature=0, use_cache=False))
    assert cached.shape == (1, 24)


@EACH_MODEL
def test_a_sequence_longer_than_the_context_is_refused_without_crop(kind):
    with pytest.raises(ValueError, match=r"prompt \(10 tokens\) plus max_new_tokens \(7\) is 17, longer than "
                                         r"the model's context of 16"):
        generate(build(kind), ids((1, 10)), 7, crop=False)


# ---- bad input, each refused before any work ---------------------------------------------------
@EACH_MODEL
@pytest.mark.parametrize("prompt, kwargs, error, message", [
    (np.zeros((1, 0), dtype=np.int64), {}, ValueError, "at least one token"),
    (np.array([[1, 11]]), {}, ValueError, r"token id 11, outside the vocabulary \[0, 11\)"),
    (np.array([[1, -1]]), {}, ValueError, "token id -1"),
    (np.zeros((1, 2)), {}, TypeError, "integer array of token ids"),
    (np.zeros(3, dtype=np.int64), {}, ValueError, r"shape \(batch, time\)"),
    (None, {"temperature": float("nan")}, ValueError, "temperature must be a finite number"),
    (None, {"temperature": -0.5}, ValueError, "temperature must be >= 0, got -0.5"),
    (None, {"top_p": 0.0}, ValueError, r"top_p must be None or a number in \(0, 1\], got 0.0"),
    (None, {"top_p": 1.5}, ValueError, "top_p must be None or a number in"),
    (None, {"top_k": 0}, ValueError, "top_k must be None or an int >= 1, got 0"),
    (None, {"max_new_tokens": -1}, ValueError, "max_new_tokens must be an int >= 0"),
    (None, {"eos_token_id": 11}, ValueError, "eos_token_id must be an int in"),
    (None, {"use_cache": "yes"}, TypeError, "use_cache must be True or False"),
])
def test_bad_generate_arguments_are_refused_naming_them(kind, prompt, kwargs, error, message):
    model = build(kind)
    calls = []
    model.forward = lambda *a, **k: calls.append(1)  # any work would be recorded here
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(error, match=message):
        generate(model, ids((1, 2)) if prompt is None else prompt, **kwargs)
    assert calls == []


def test_the_cache_refuses_overflow_and_autograd():
    model = build("llama")
    cache = model.new_cache(1, 4)
    with pytest.raises(RuntimeError, match="for inference: run the forward under tinylora.no_grad"):
        model(ids((1, 2)), cache=cache)
    with no_grad():
        model(ids((1, 3)), cache=cache)
        with pytest.raises(ValueError, match="2 new tokens after 3 cached ones exceed its max_len=4"):
            model(ids((1, 2)), cache=cache)
    with pytest.raises(ValueError, match="max_len=17 is longer than"):
        model.new_cache(1, 17)
    with pytest.raises(ValueError, match="KVCache: head_dim must be a positive int"):
        KVCache(1, 1, 1, 4, 0)


def test_cache_shapes_follow_the_kv_heads():
    cache = build("llama").new_cache(3, 7)
    assert len(cache.keys) == 2 and cache.keys[0].shape == (3, 2, 7, 4) and cache.keys[0].dtype == np.float32
