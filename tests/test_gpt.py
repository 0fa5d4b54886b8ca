"""The GPT: shapes, causality, the loss at initialisation, learning, gradients, and bad input."""
import math

import numpy as np
import pytest

from tinylora import gradcheck
from tinylora.gpt import GPT, GPTConfig
from tinylora.optim import AdamW

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def ids(shape, vocab=11, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


def test_logits_have_shape_batch_by_time_by_vocab():
    logits, loss = GPT(TINY)(ids((3, 5)))
    assert logits.shape == (3, 5, 11)
    assert loss is None


def test_changing_token_t_never_changes_logits_at_earlier_positions():
    model = GPT(TINY, seed=1)
    x = ids((1, 8))
    before, _ = model(x)
    for t in range(8):
        changed = x.copy()
        changed[0, t] = (changed[0, t] + 1) % 11
        after, _ = model(changed)
        np.testing.assert_array_equal(after.data[0, :t], before.data[0, :t])
        assert not np.allclose(after.data[0, t:], before.data[0, t:])


def test_loss_at_initialisation_is_close_to_log_vocab_size():
    """With N(0, 0.02) weights every token is about equally likely: loss ≈ ln(96) = 4.56."""
    model = GPT(GPTConfig.preset("nano"), seed=0)
    _, loss = model(ids((4, 32), vocab=96), ids((4, 32), vocab=96, seed=1))
    assert abs(loss.item() - math.log(96)) < 0.1


def test_model_overfits_a_single_small_batch_to_near_zero_loss():
    model = GPT(GPTConfig.preset("nano"), seed=0)
    x, y = ids((2, 16), vocab=96), ids((2, 16), vocab=96, seed=1)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(150):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def test_whole_tiny_gpt_passes_gradcheck_in_float64_on_every_parameter():
    model = GPT(TINY, seed=0).to(dtype=np.float64)
    x, y = ids((2, 6)), ids((2, 6), seed=1)
    params = [p for name, p in model.named_parameters() if name.startswith(("blocks.1", "wte", "lm_head"))]
    assert gradcheck(lambda *_: model(x, y)[1], *params, atol=1e-6, rtol=1e-4)


def test_logits_gradient_matches_finite_differences_for_the_first_block():
    model = GPT(TINY, seed=2).to(dtype=np.float64)
    x = ids((1, 7))
    params = [p for name, p in model.named_parameters() if name.startswith(("blocks.0", "wpe", "ln_f"))]
    assert gradcheck(lambda *_: model(x)[0], *params, atol=1e-6, rtol=1e-4)


def test_float32_model_keeps_float32_logits_loss_and_gradients():
    model = GPT(TINY)
    logits, loss = model(ids((2, 4)), ids((2, 4), seed=1))
    loss.backward()
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    assert {p.grad.dtype for p in model.parameters()} == {np.dtype(np.float32)}


def test_same_seed_gives_identical_weights_and_other_seed_differs():
    a, b, c = GPT(TINY, seed=3), GPT(TINY, seed=3), GPT(TINY, seed=4)
    np.testing.assert_array_equal(a.lm_head.weight.data, b.lm_head.weight.data)
    assert not np.array_equal(a.lm_head.weight.data, c.lm_head.weight.data)


def test_parameter_names_expose_separate_query_key_value_and_output_projections():
    names = [n for n, _ in GPT(TINY).named_parameters()]
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert f"blocks.0.attn.{proj}.weight" in names
    assert {"wte.weight", "wpe.weight", "ln_f.weight", "lm_head.weight",
            "blocks.1.mlp.fc_in.weight"} <= set(names)


def test_generate_appends_max_new_tokens_and_is_reproducible_with_a_seed():
    model = GPT(TINY, seed=0)
    prompt = ids((2, 3))
    a = model.generate(prompt, 10, seed=7)
    b = model.generate(prompt, 10, seed=7)
    assert a.shape == (2, 13)
    np.testing.assert_array_equal(a[:, :3], prompt)
    np.testing.assert_array_equal(a, b)


def test_generate_with_temperature_zero_is_greedy():
    model = GPT(TINY, seed=0)
    out = model.generate(ids((1, 3)), 1, temperature=0)
    logits, _ = model(out[:, :3])
    assert out[0, 3] == logits.data[0, -1].argmax()


def test_generate_with_top_k_one_equals_greedy():
    model = GPT(TINY, seed=0)
    prompt = ids((1, 3))
    np.testing.assert_array_equal(model.generate(prompt, 12, top_k=1, seed=1),
                                  model.generate(prompt, 12, temperature=0))


def test_generate_crops_a_long_context_to_block_size():
    model = GPT(TINY, seed=0)
    assert model.generate(ids((1, 8)), 5, seed=0).shape == (1, 13)


def test_state_dict_round_trip_is_exact():
    a, b = GPT(TINY, seed=0), GPT(TINY, seed=1)
    b.load_state_dict(a.state_dict())
    x = ids((2, 5))
    np.testing.assert_array_equal(a(x)[0].data, b(x)[0].data)


@pytest.mark.parametrize("field, value, error, message", [
    ("n_embd", 10, ValueError, "divisible by n_head"),
    ("n_layer", 0, ValueError, "n_layer must be a positive int, got 0"),
    ("vocab_size", -3, ValueError, "vocab_size must be a positive int, got -3"),
    ("block_size", 2.5, TypeError, r"block_size must be an int, got 2.5 \(float\)"),
    ("dropout", 1.0, ValueError, r"dropout must be a number in \[0, 1\), got 1.0"),
])
def test_bad_config_is_refused_at_creation(field, value, error, message):
    with pytest.raises(error, match=message):
        GPTConfig(**{**TINY.to_dict(), field: value, "n_head": 4 if field == "n_embd" else TINY.n_head})


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError, match="name must be one of .*nano.*got 'huge'"):
        GPTConfig.preset("huge")


def test_sequence_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="9 tokens, more than block_size=8"):
        GPT(TINY)(ids((1, 9)))


def test_token_id_at_or_above_vocab_size_is_refused():
    x = ids((1, 4))
    x[0, 2] = 11
    with pytest.raises(ValueError, match=r"token id 11, outside \[0, 11\)"):
        GPT(TINY)(x)


def test_float_token_ids_are_refused():
    with pytest.raises(TypeError, match="integer array of token ids"):
        GPT(TINY)(np.zeros((1, 4)))


def test_generate_refuses_negative_temperature():
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1"):
        GPT(TINY).generate(ids((1, 2)), 3, temperature=-1)
