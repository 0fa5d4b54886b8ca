"""Fused ops in tinylora.functional: float64 gradchecks, values against NumPy formulas, and errors.

Every test runs on each backend (numpy, the strict fake CuPy, real CuPy when present) through
the ``backend``/``xp``/``make`` fixtures in conftest.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import tinylora.functional as F
from tinylora import Tensor, asnumpy, gradcheck

from .fake_cupy import calls


def host(t):
    """A Tensor's (or array's) values as a NumPy array, from any backend."""
    return asnumpy(t.data if isinstance(t, Tensor) else t)


def on_device(xp, array):
    """A host NumPy array moved to the backend's array module."""
    return array if xp is np else xp.asarray(array)


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def np_attention(q, k, v, causal):
    T, S = q.shape[-2], k.shape[-2]
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        visible = np.arange(S)[None, :] <= np.arange(T)[:, None] + (S - T)
        scores = np.where(visible, scores, -np.inf)
    return np_softmax(scores) @ v


# ---- linear ------------------------------------------------------------------------------
def test_linear_matches_x_times_weight_transposed_plus_bias(make, rng):
    x, w, b = rng.normal(size=(2, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    out = F.linear(make(x), make(w), make(b))
    np.testing.assert_allclose(host(out), x @ w.T + b, rtol=1e-12)


def test_linear_gradients_match_finite_differences(make, rng):
    x = make(rng.normal(size=(2, 2, 3)), requires_grad=True)
    w = make(rng.normal(size=(4, 3)), requires_grad=True)
    b = make(rng.normal(size=4), requires_grad=True)
    assert gradcheck(F.linear, x, w, b)


def test_linear_without_bias_gradients_match_finite_differences(make, rng):
    x = make(rng.normal(size=(3,)), requires_grad=True)
    w = make(rng.normal(size=(2, 3)), requires_grad=True)
    assert gradcheck(F.linear, x, w)


def test_linear_skips_the_weight_gradient_matmul_when_the_weight_is_frozen(backend, make, rng):
    if backend != "fakecupy":
        pytest.skip("counts calls on the fake CuPy")

    def matmuls_in_backward(weight_requires_grad):
        x = make(rng.normal(size=(2, 3)), requires_grad=True)
        w = make(rng.normal(size=(4, 3)), requires_grad=weight_requires_grad)
        out = F.linear(x, w).sum()
        before = calls["matmul"]
        out.backward()
        return calls["matmul"] - before, w.grad

    trained, trained_grad = matmuls_in_backward(True)
    frozen, frozen_grad = matmuls_in_backward(False)
    assert (trained, frozen) == (2, 1)
    assert trained_grad is not None and frozen_grad is None


def test_linear_names_both_shapes_when_in_features_disagree(make):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(make(np.zeros((2, 3))), make(np.zeros((4, 5))))


def test_linear_names_the_bias_shape_when_it_is_not_out_features(make):
    with pytest.raises(ValueError, match=r"bias shape \(3,\)"):
        F.linear(make(np.zeros((2, 3))), make(np.zeros((4, 3))), make(np.zeros(3)))


def test_linear_refuses_tensors_on_two_devices(backend, make):
    if backend == "numpy":
        pytest.skip("needs a second device")
    with pytest.raises(ValueError, match="x is on cpu and weight is on cuda"):
        F.linear(Tensor(np.zeros((2, 3))), make(np.zeros((4, 3))))


# ---- lora_linear: a LoRA layer as one op -------------------------------------------------------------
def test_lora_linear_equals_the_frozen_linear_plus_the_scaled_low_rank_path(make, rng):
    x, w, b = rng.normal(size=(2, 5, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    a, bb = rng.normal(size=(2, 3)), rng.normal(size=(4, 2))
    out = F.lora_linear(make(x), make(w), make(b), make(a), make(bb), 0.5)
    np.testing.assert_allclose(host(out), x @ w.T + b + 0.5 * (x @ a.T) @ bb.T, rtol=1e-12)


def test_lora_linear_gradients_match_finite_differences(make, rng):
    x = make(rng.normal(size=(2, 2, 3)), requires_grad=True)
    w, b = make(rng.normal(size=(4, 3)), requires_grad=True), make(rng.normal(size=4), requires_grad=True)
    a = make(rng.normal(size=(2, 3)), requires_grad=True)
    bb = make(rng.normal(size=(4, 2)), requires_grad=True)
    assert gradcheck(lambda *t: F.lora_linear(*t, 0.5), x, w, b, a, bb)


def test_lora_linear_never_forms_the_frozen_weight_gradient(backend, make, rng):
    if backend != "fakecupy":
        pytest.skip("counts calls on the fake CuPy")
    x = make(rng.normal(size=(2, 3)), requires_grad=True)
    w = make(rng.normal(size=(4, 3)))
    a = make(rng.normal(size=(2, 3)), requires_grad=True)
    bb = make(rng.normal(size=(4, 2)), requires_grad=True)
    out = F.lora_linear(x, w, None, a, bb, 0.5).sum()
    before = calls["matmul"]
    out.backward()
    assert calls["matmul"] - before == 5  # g·W, g·B, gtᵀ·x, x·Aᵀ, gᵀ·t; never gᵀ·x for W0
    assert w.grad is None and a.grad is not None and bb.grad is not None


def test_lora_linear_names_the_shapes_that_do_not_fit(make):
    with pytest.raises(ValueError, match=r"lora_A \(r, in\) \(2, 5\)"):
        F.lora_linear(make(np.zeros((2, 3))), make(np.zeros((4, 3))), None, make(np.zeros((2, 5))),
                      make(np.zeros((4, 2))), 1.0)


# ---- softmax family ------------------------------------------------------------------------
def test_softmax_matches_the_exponential_formula(make):
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(host(F.softmax(make(x))), np.exp(x) / np.exp(x).sum(axis=1, keepdims=True),
                               rtol=1e-12)


@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_gradients_match_finite_differences(make, rng, axis):
    assert gradcheck(lambda t: F.softmax(t, axis=axis), make(rng.normal(size=(2, 3)), requires_grad=True))


def test_softmax_is_finite_for_logits_of_ten_thousand(make):
    out = host(F.softmax(make([1e4, -1e4, 0.0])))
    np.testing.assert_allclose(out, [1.0, 0.0, 0.0])


def test_softmax_rejects_an_axis_out_of_range(make):
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        F.softmax(make(np.zeros((2, 3))), axis=2)


def test_log_softmax_matches_the_log_of_softmax(make):
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 5.0]])
    np.testing.assert_allclose(host(F.log_softmax(make(x))), np.log(np_softmax(x)), rtol=1e-12)


@pytest.mark.parametrize("axis", [0, -1])
def test_log_softmax_gradients_match_finite_differences(make, rng, axis):
    assert gradcheck(lambda t: F.log_softmax(t, axis=axis), make(rng.normal(size=(2, 3)), requires_grad=True))


def test_log_softmax_is_finite_for_logits_of_ten_thousand(make):
    np.testing.assert_allclose(host(F.log_softmax(make([1e4, -1e4]))), [0.0, -2e4])


# ---- cross_entropy ---------------------------------------------------------------------------
def test_cross_entropy_is_the_mean_negative_log_probability_of_the_targets(make):
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    targets = np.array([0, 1])
    expected = -np.log(np_softmax(logits))[[0, 1], targets].mean()
    assert F.cross_entropy(make(logits), targets).item() == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_gradients_match_finite_differences(make, rng):
    logits = make(rng.normal(size=(2, 3, 4)), requires_grad=True)
    assert gradcheck(lambda t: F.cross_entropy(t, np.array([[0, 3, 1], [2, 2, 0]])), logits)


def test_cross_entropy_with_ignored_positions_gradients_match_finite_differences(make, rng):
    logits = make(rng.normal(size=(4, 3)), requires_grad=True)
    assert gradcheck(lambda t: F.cross_entropy(t, np.array([0, -1, 2, -1]), ignore_index=-1), logits)


def test_cross_entropy_is_stable_for_logits_of_ten_thousand(make):
    logits = make([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]], requires_grad=True)
    loss = F.cross_entropy(logits, np.array([0, 1]))  # log-probs 0 and -2e4
    loss.backward()
    assert loss.item() == pytest.approx(1e4)
    assert np.isfinite(host(logits.grad)).all()


def test_cross_entropy_averages_only_over_positions_not_ignored(make):
    logits = np.array([[2.0, 1.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    full = F.cross_entropy(make(logits[[0, 2]]), np.array([0, 2])).item()
    ignored = F.cross_entropy(make(logits), np.array([0, -100, 2]), ignore_index=-100).item()
    assert ignored == pytest.approx(full, rel=1e-12)


def test_cross_entropy_gives_ignored_positions_zero_gradient(make):
    logits = make(np.ones((2, 3)), requires_grad=True)
    F.cross_entropy(logits, np.array([1, 7]), ignore_index=7).backward()
    np.testing.assert_array_equal(host(logits.grad)[1], [0.0, 0.0, 0.0])


def test_cross_entropy_accepts_targets_as_an_int_tensor_on_the_device(make, xp):
    targets = Tensor(on_device(xp, np.array([0, 1])))
    assert F.cross_entropy(make(np.zeros((2, 4))), targets).item() == pytest.approx(math.log(4))


def test_cross_entropy_names_an_out_of_range_target_and_the_valid_range(make):
    with pytest.raises(ValueError, match=r"target 5 is out of range; valid values are \[0, 3\)"):
        F.cross_entropy(make(np.zeros((2, 3))), np.array([0, 5]))


def test_cross_entropy_names_a_negative_target(make):
    with pytest.raises(ValueError, match=r"target -1 is out of range"):
        F.cross_entropy(make(np.zeros((2, 3))), np.array([-1, 0]))


def test_cross_entropy_raises_when_every_target_is_ignored(make):
    with pytest.raises(ValueError, match="every target equals ignore_index=-100"):
        F.cross_entropy(make(np.zeros((2, 3))), np.array([-100, -100]), ignore_index=-100)


def test_cross_entropy_names_both_shapes_when_targets_do_not_fit(make):
    with pytest.raises(ValueError, match=r"targets shape \(3,\).*\(2,\)"):
        F.cross_entropy(make(np.zeros((2, 4))), np.array([0, 1, 2]))


def test_cross_entropy_rejects_float_targets(make):
    with pytest.raises(TypeError, match="integer array, got dtype float64"):
        F.cross_entropy(make(np.zeros((2, 4))), np.array([0.0, 1.0]))


# ---- layer_norm ------------------------------------------------------------------------------
def test_layer_norm_matches_the_normalisation_formula(make):
    x = np.array([[1.0, 2.0, 6.0], [0.0, -1.0, 1.0]])
    w, b = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.0, -0.5])
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(host(F.layer_norm(make(x), make(w), make(b))), expected, rtol=1e-12)


def test_layer_norm_gradients_match_finite_differences(make, rng):
    x = make(rng.normal(size=(2, 2, 3)), requires_grad=True)
    w = make(rng.normal(size=3), requires_grad=True)
    b = make(rng.normal(size=3), requires_grad=True)
    assert gradcheck(F.layer_norm, x, w, b)


def test_layer_norm_without_weight_and_bias_gradients_match_finite_differences(make, rng):
    x = make(rng.normal(size=(2, 4)), requires_grad=True)
    assert gradcheck(lambda t: F.layer_norm(t, None, None), x)


def test_layer_norm_names_a_weight_of_the_wrong_size(make):
    with pytest.raises(ValueError, match=r"weight shape \(2,\) must be \(D,\) = \(3,\)"):
        F.layer_norm(make(np.zeros((2, 3))), make(np.ones(2)), None)


# ---- gelu ------------------------------------------------------------------------------------
def test_gelu_matches_the_gpt2_tanh_formula(make):
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(host(F.gelu(make(x))), np_gelu(x), rtol=1e-12)


def test_gelu_gradients_match_finite_differences(make, rng):
    assert gradcheck(F.gelu, make(rng.normal(size=(2, 3)) * 2, requires_grad=True))


# ---- dropout ---------------------------------------------------------------------------------
def test_dropout_is_the_identity_when_not_training(make):
    x = make(np.ones(5))
    assert F.dropout(x, 0.5, training=False) is x


def test_dropout_with_p_zero_is_the_identity(make):
    x = make(np.ones(5))
    assert F.dropout(x, 0.0, training=True) is x


def test_dropout_scales_kept_elements_by_one_over_one_minus_p(make, xp):
    out = host(F.dropout(make(np.ones(100)), 0.75, training=True, rng=xp.random.default_rng(0)))
    assert set(np.unique(out)) == {0.0, 4.0}


def test_dropout_preserves_the_mean_in_expectation(make, xp):
    out = F.dropout(make(np.ones(20_000)), 0.3, training=True, rng=xp.random.default_rng(0))
    assert host(out).mean() == pytest.approx(1.0, abs=0.03)


def test_dropout_gradients_match_finite_differences(make, xp, rng):
    x = make(rng.normal(size=(2, 3)), requires_grad=True)
    assert gradcheck(lambda t: F.dropout(t, 0.5, training=True, rng=xp.random.default_rng(1)), x)


def test_dropout_draws_its_mask_with_the_array_module_of_x(backend, make, xp):
    out = F.dropout(make(np.ones(4)), 0.5, training=True)
    assert isinstance(out.data, xp.ndarray)
    if backend == "fakecupy":
        assert calls["random.random"] == 1


def test_dropout_refuses_a_numpy_generator_for_device_data(backend, make):
    if backend == "numpy":
        pytest.skip("needs device data")
    with pytest.raises(ValueError, match="rng made a mask on cpu but x is on cuda"):
        F.dropout(make(np.ones(4)), 0.5, training=True, rng=np.random.default_rng(0))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_p_outside_zero_to_one(make, p):
    with pytest.raises(ValueError, match=rf"p must be in \[0, 1\), got {p}"):
        F.dropout(make(np.ones(3)), p, training=True)


# ---- embedding -------------------------------------------------------------------------------
def test_embedding_picks_rows_of_the_weight(make):
    w = np.arange(8.0).reshape(4, 2)
    ids = np.array([[3, 0], [1, 1]])
    np.testing.assert_array_equal(host(F.embedding(ids, make(w))), w[ids])


def test_embedding_gradients_match_finite_differences(make, rng):
    w = make(rng.normal(size=(4, 2)), requires_grad=True)
    assert gradcheck(lambda t: F.embedding(np.array([[3, 0, 3]]), t), w)


def test_embedding_adds_up_gradients_of_repeated_ids(make):
    w = make(np.zeros((3, 2)), requires_grad=True)
    F.embedding(np.array([1, 1, 1, 2]), w).sum().backward()
    np.testing.assert_array_equal(host(w.grad), [[0, 0], [3, 3], [1, 1]])


def test_embedding_accepts_ids_already_on_the_device(make, xp):
    ids = on_device(xp, np.array([2, 0]))
    np.testing.assert_array_equal(host(F.embedding(ids, make(np.eye(3)))), [[0, 0, 1], [1, 0, 0]])


def test_embedding_names_an_out_of_range_id_and_the_vocabulary_size(make):
    with pytest.raises(ValueError, match=r"id 4 is out of range; valid values are \[0, 4\)"):
        F.embedding(np.array([0, 4]), make(np.zeros((4, 2))))


def test_embedding_rejects_float_ids(make):
    with pytest.raises(TypeError, match="ids must be an integer array, got dtype float64"):
        F.embedding(np.array([0.0, 1.0]), make(np.zeros((4, 2))))


# ---- scaled_dot_product_attention ----------------------------------------------------------------
@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_softmax_of_scaled_scores_times_values(make, rng, causal):
    q, k, v = rng.normal(size=(1, 2, 3, 4)), rng.normal(size=(1, 2, 3, 4)), rng.normal(size=(1, 2, 3, 2))
    out = F.scaled_dot_product_attention(make(q), make(k), make(v), causal=causal)
    np.testing.assert_allclose(host(out), np_attention(q, k, v, causal), rtol=1e-12)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_gradients_match_finite_differences(make, rng, causal):
    q, k, v = (make(rng.normal(size=(1, 2, 3, 2)), requires_grad=True) for _ in range(3))
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, causal=causal), q, k, v)


def test_attention_with_fewer_queries_than_keys_gradients_match_finite_differences(make, rng):
    q = make(rng.normal(size=(2, 2, 2)), requires_grad=True)
    k, v = (make(rng.normal(size=(2, 3, 2)), requires_grad=True) for _ in range(2))
    assert gradcheck(F.scaled_dot_product_attention, q, k, v)


def test_causal_attention_output_never_depends_on_later_keys_or_values(make, rng):
    q, k, v = rng.normal(size=(1, 1, 4, 2)), rng.normal(size=(1, 1, 4, 2)), rng.normal(size=(1, 1, 4, 2))
    before = host(F.scaled_dot_product_attention(make(q), make(k), make(v)))
    k[..., 3, :], v[..., 3, :] = 100.0, -100.0  # change only the last position
    after = host(F.scaled_dot_product_attention(make(q), make(k), make(v)))
    np.testing.assert_array_equal(after[..., :3, :], before[..., :3, :])
    assert not np.allclose(after[..., 3, :], before[..., 3, :])


def test_causal_attention_aligns_fewer_queries_with_the_last_keys(make, rng):
    q, k, v = rng.normal(size=(1, 3, 2)), rng.normal(size=(1, 3, 2)), rng.normal(size=(1, 3, 2))
    full = host(F.scaled_dot_product_attention(make(q), make(k), make(v)))
    last = host(F.scaled_dot_product_attention(make(q[:, 2:]), make(k), make(v)))
    np.testing.assert_allclose(last, full[:, 2:], rtol=1e-12)


def test_causal_attention_rejects_more_queries_than_keys(make):
    with pytest.raises(ValueError, match="causal attention needs T <= S.*T=3, S=2"):
        F.scaled_dot_product_attention(make(np.zeros((3, 2))), make(np.zeros((2, 2))), make(np.zeros((2, 2))))


def test_attention_names_the_shapes_when_head_sizes_differ(make):
    with pytest.raises(ValueError, match=r"q \(1, 2, 4\), k \(1, 2, 3\)"):
        F.scaled_dot_product_attention(make(np.zeros((1, 2, 4))), make(np.zeros((1, 2, 3))),
                                       make(np.zeros((1, 2, 3))))


# ---- where, concat, stack ------------------------------------------------------------------------
def test_where_picks_a_where_the_condition_holds_and_b_elsewhere(make):
    cond = np.array([[True, False, True]])
    a, b = np.array([[1.0, 2.0, 3.0]]), np.array([[-1.0], [-2.0]])
    np.testing.assert_array_equal(host(F.where(cond, make(a), make(b))), np.where(cond, a, b))


def test_where_gradients_match_finite_differences_when_broadcasting(make, rng):
    cond = np.array([[True, False, True], [False, False, True]])
    a = make(rng.normal(size=(1, 3)), requires_grad=True)
    b = make(rng.normal(size=(2, 1)), requires_grad=True)
    assert gradcheck(lambda x, y: F.where(cond, x, y), a, b)


def test_where_accepts_a_python_scalar_branch(make):
    out = F.where(np.array([True, False]), make([1.0, 2.0]), -5.0)
    np.testing.assert_array_equal(host(out), [1.0, -5.0])


def test_where_rejects_a_condition_that_is_not_bool(make):
    with pytest.raises(TypeError, match="cond must be a bool array, got dtype int64"):
        F.where(np.array([1, 0]), make([1.0, 2.0]), 0.0)


def test_concat_joins_along_the_given_axis(make):
    a, b = np.ones((2, 1)), np.zeros((2, 2))
    np.testing.assert_array_equal(host(F.concat([make(a), make(b)], axis=1)), np.concatenate([a, b], axis=1))


def test_concat_gradients_match_finite_differences(make, rng):
    a = make(rng.normal(size=(2, 1)), requires_grad=True)
    b = make(rng.normal(size=(2, 2)), requires_grad=True)
    assert gradcheck(lambda x, y: F.concat([x, y], axis=-1), a, b)


def test_concat_names_the_shape_that_does_not_fit(make):
    with pytest.raises(ValueError, match=r"tensors\[1\] has shape \(3, 2\)"):
        F.concat([make(np.ones((2, 2))), make(np.ones((3, 2)))], axis=1)


def test_concat_rejects_an_empty_list():
    with pytest.raises(ValueError, match="at least one tensor"):
        F.concat([])


def test_stack_adds_a_new_axis(make):
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    np.testing.assert_array_equal(host(F.stack([make(a), make(b)], axis=1)), [[1.0, 3.0], [2.0, 4.0]])


def test_stack_gradients_match_finite_differences(make, rng):
    a = make(rng.normal(size=(2, 3)), requires_grad=True)
    b = make(rng.normal(size=(2, 3)), requires_grad=True)
    assert gradcheck(lambda x, y: F.stack([x, y], axis=1), a, b)


def test_stack_names_the_shape_that_differs(make):
    with pytest.raises(ValueError, match=r"tensors\[1\] has shape \(3,\) but tensors\[0\] has \(2,\)"):
        F.stack([make(np.ones(2)), make(np.ones(3))])


# ---- float32 everywhere --------------------------------------------------------------------------
def _float32_cases():
    """name -> builder(make32, xp) returning (output, inputs that require grad)."""
    def grad(make32, shape, seed=0):
        return make32(np.random.default_rng(seed).normal(size=shape), requires_grad=True)

    def case_linear(m, xp):
        x, w, b = grad(m, (2, 3)), grad(m, (4, 3), 1), grad(m, (4,), 2)
        return F.linear(x, w, b), [x, w, b]

    def case_lora_linear(m, xp):
        x, w, b = grad(m, (2, 3)), grad(m, (4, 3), 1), grad(m, (4,), 2)
        a, bb = grad(m, (2, 3), 3), grad(m, (4, 2), 4)
        return F.lora_linear(x, w, b, a, bb, 0.5), [x, w, b, a, bb]

    def case_layer_norm(m, xp):
        x, w, b = grad(m, (2, 3)), grad(m, (3,), 1), grad(m, (3,), 2)
        return F.layer_norm(x, w, b), [x, w, b]

    def case_attention(m, xp):
        q, k, v = grad(m, (1, 2, 3, 2)), grad(m, (1, 2, 3, 2), 1), grad(m, (1, 2, 3, 2), 2)
        return F.scaled_dot_product_attention(q, k, v), [q, k, v]

    def unary(fn):
        def case(m, xp):
            x = grad(m, (2, 3))
            return fn(x, xp), [x]
        return case

    def binary(fn):
        def case(m, xp):
            a, b = grad(m, (2, 3)), grad(m, (2, 3), 1)
            return fn(a, b), [a, b]
        return case

    return {
        "linear": case_linear,
        "lora_linear": case_lora_linear,
        "softmax": unary(lambda x, xp: F.softmax(x)),
        "log_softmax": unary(lambda x, xp: F.log_softmax(x)),
        "cross_entropy": unary(lambda x, xp: F.cross_entropy(x, np.array([0, 2]))),
        "cross_entropy_ignore": unary(lambda x, xp: F.cross_entropy(x, np.array([0, -1]), ignore_index=-1)),
        "layer_norm": case_layer_norm,
        "gelu": unary(lambda x, xp: F.gelu(x)),
        "dropout": unary(lambda x, xp: F.dropout(x, 0.5, training=True, rng=xp.random.default_rng(0))),
        "embedding": unary(lambda w, xp: F.embedding(np.array([1, 0, 1]), w)),
        "attention": case_attention,
        "where": binary(lambda a, b: F.where(np.array([True, False, True]), a, b)),
        "where_scalar": unary(lambda x, xp: F.where(np.array([True, False, True]), x, 0.5)),
        "concat": binary(lambda a, b: F.concat([a, b], axis=1)),
        "stack": binary(lambda a, b: F.stack([a, b])),
    }


@pytest.mark.parametrize("op", sorted(_float32_cases()))
def test_every_op_keeps_float32_in_forward_and_backward(make, xp, op):
    out, inputs = _float32_cases()[op](
        lambda data, requires_grad=False: make(data, requires_grad, np.float32), xp)
    assert out.dtype == np.float32
    out.backward(xp.asarray(np.ones(out.shape, dtype=np.float32)))
    assert [t.grad.dtype for t in inputs] == [np.float32] * len(inputs)


# ---- in-place work stays inside each op ----------------------------------------------------------
def _run_case(op, make, xp, dtype=np.float64):
    """(output, inputs, upstream gradient) for one of the cases above, in ``dtype``."""
    out, inputs = _float32_cases()[op](lambda data, requires_grad=False: make(data, requires_grad, dtype), xp)
    upstream = xp.asarray(np.random.default_rng(3).uniform(0.5, 1.5, size=out.shape).astype(dtype))
    return out, inputs, upstream


@pytest.mark.parametrize("op", sorted(_float32_cases()))
def test_no_op_writes_to_its_inputs_or_to_the_upstream_gradient(make, xp, op):
    out, inputs, upstream = _run_case(op, make, xp)
    before = [host(t).copy() for t in inputs], host(upstream).copy()
    out.backward(upstream)
    np.testing.assert_array_equal(host(upstream), before[1])
    for t, data in zip(inputs, before[0]):
        np.testing.assert_array_equal(host(t), data)


@pytest.mark.parametrize("op", sorted(_float32_cases()))
def test_backward_through_a_retained_graph_gives_the_same_gradients_twice(make, xp, op):
    out, inputs, upstream = _run_case(op, make, xp)
    out.backward(upstream, retain_graph=True)
    first = [host(t.grad).copy() for t in inputs]
    for t in inputs:
        t.grad = None
    out.backward(upstream)
    for t, grad in zip(inputs, first):
        np.testing.assert_array_equal(host(t.grad), grad)


def test_causal_mask_is_built_once_per_shape_and_dtype(xp):
    a = F._causal_mask(3, 5, np.dtype(np.float32), xp)
    assert F._causal_mask(3, 5, np.dtype(np.float32), xp) is a
    assert F._causal_mask(3, 5, np.dtype(np.float64), xp) is not a
    np.testing.assert_array_equal(np.isinf(host(a)), ~(np.arange(5)[None, :] <= np.arange(3)[:, None] + 2))
