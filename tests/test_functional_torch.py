"""Reference tests: each fused op against PyTorch in float64, values and gradients.

Skipped when torch is not installed. Both libraries get the same inputs and the same random
upstream gradient, so the input gradients must agree to rounding error.
"""
from __future__ import annotations

import numpy as np
import pytest

import tinylora.functional as F
from tinylora import Tensor

torch = pytest.importorskip("torch")

from .torch_compare import compare  # noqa: E402

TF = torch.nn.functional


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_linear_matches_torch(rng):
    compare(F.linear, TF.linear, rng.normal(size=(2, 3, 4)), rng.normal(size=(5, 4)), rng.normal(size=5))


def test_linear_without_bias_matches_torch(rng):
    compare(F.linear, TF.linear, rng.normal(size=(3, 4)), rng.normal(size=(2, 4)))


@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_matches_torch(rng, axis):
    compare(lambda x: F.softmax(x, axis), lambda x: torch.softmax(x, axis), rng.normal(size=(3, 4)) * 5)


@pytest.mark.parametrize("axis", [0, -1])
def test_log_softmax_matches_torch(rng, axis):
    compare(lambda x: F.log_softmax(x, axis), lambda x: torch.log_softmax(x, axis),
            rng.normal(size=(3, 4)) * 5)


def test_cross_entropy_matches_torch(rng):
    targets = np.array([[0, 4, 2], [1, 1, 3]])
    compare(lambda x: F.cross_entropy(x, targets),
            lambda x: TF.cross_entropy(x.reshape(-1, 5), torch.tensor(targets.reshape(-1))),
            rng.normal(size=(2, 3, 5)))


def test_cross_entropy_with_ignore_index_matches_torch(rng):
    targets = np.array([0, -100, 2, -100, 1])
    compare(lambda x: F.cross_entropy(x, targets, ignore_index=-100),
            lambda x: TF.cross_entropy(x, torch.tensor(targets), ignore_index=-100),
            rng.normal(size=(5, 3)))


def test_cross_entropy_for_logits_of_ten_thousand_matches_torch():
    targets = np.array([0, 1, 2])
    compare(lambda x: F.cross_entropy(x, targets), lambda x: TF.cross_entropy(x, torch.tensor(targets)),
            np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]]))


def test_layer_norm_matches_torch(rng):
    compare(lambda x, w, b: F.layer_norm(x, w, b), lambda x, w, b: TF.layer_norm(x, (4,), w, b, eps=1e-5),
            rng.normal(size=(2, 3, 4)), rng.normal(size=4), rng.normal(size=4))


def test_layer_norm_without_weight_and_bias_matches_torch(rng):
    compare(lambda x: F.layer_norm(x, None, None, eps=1e-3), lambda x: TF.layer_norm(x, (4,), eps=1e-3),
            rng.normal(size=(3, 4)))


def test_gelu_matches_torch_tanh_approximation(rng):
    compare(F.gelu, lambda x: TF.gelu(x, approximate="tanh"), rng.normal(size=(3, 4)) * 3)


def test_dropout_scales_kept_elements_as_torch_does(rng):
    x = rng.normal(size=1000)
    ours = F.dropout(Tensor(x), 0.25, training=True, rng=np.random.default_rng(0)).data
    theirs = TF.dropout(torch.tensor(x), 0.25, training=True).numpy()
    both = (ours != 0) & (theirs != 0)
    np.testing.assert_allclose(ours[both], theirs[both], rtol=1e-15)


def test_embedding_matches_torch(rng):
    ids = np.array([[3, 0, 3], [1, 1, 2]])
    compare(lambda w: F.embedding(ids, w), lambda w: TF.embedding(torch.tensor(ids), w),
            rng.normal(size=(4, 2)))


@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_torch(rng, causal):
    mask = torch.ones(3, 3, dtype=torch.bool).tril() if causal else None
    compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=causal),
            lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, attn_mask=mask),
            rng.normal(size=(2, 2, 3, 4)), rng.normal(size=(2, 2, 3, 4)), rng.normal(size=(2, 2, 3, 5)))


def test_causal_attention_with_fewer_queries_matches_torch_with_a_bottom_right_mask(rng):
    mask = torch.ones(2, 4, dtype=torch.bool).tril(diagonal=2)  # query t sees keys <= t + (S - T)
    compare(F.scaled_dot_product_attention,
            lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, attn_mask=mask),
            rng.normal(size=(1, 2, 2, 3)), rng.normal(size=(1, 2, 4, 3)), rng.normal(size=(1, 2, 4, 3)))


def test_where_matches_torch(rng):
    cond = np.array([[True, False, True], [False, True, True]])
    compare(lambda a, b: F.where(cond, a, b), lambda a, b: torch.where(torch.tensor(cond), a, b),
            rng.normal(size=(1, 3)), rng.normal(size=(2, 1)))


def test_concat_matches_torch(rng):
    compare(lambda a, b: F.concat([a, b], axis=1), lambda a, b: torch.cat([a, b], dim=1),
            rng.normal(size=(2, 1, 3)), rng.normal(size=(2, 4, 3)))


def test_stack_matches_torch(rng):
    compare(lambda a, b, c: F.stack([a, b, c], axis=-1), lambda a, b, c: torch.stack([a, b, c], dim=-1),
            rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3)))
