"""Shortcuts inside the fused ops give the plain formula's numbers and never write to their inputs.

Grouped-query attention folds the query groups into the rows of one GEMM per key/value head;
cross_entropy takes its exponentials a block of rows at a time. Each runs on every backend
through the ``make`` fixture in conftest.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import tinylora.functional as F
from tinylora import asnumpy, gradcheck


def host(t):
    return asnumpy(t.data)


def grouped_qkv(rng):
    """q for 2 kv heads x 3 query heads each, k and v with a size-1 group axis: (B, Hkv, G, T, hd)."""
    q = rng.normal(size=(2, 2, 3, 4, 5))
    k, v = rng.normal(size=(2, 2, 1, 4, 5)), rng.normal(size=(2, 2, 1, 4, 6))
    return q, k, v


@pytest.mark.parametrize("causal", [True, False])
def test_grouped_attention_equals_attention_with_the_kv_heads_repeated(make, rng, causal):
    q, k, v = grouped_qkv(rng)
    grouped = F.scaled_dot_product_attention(make(q), make(k), make(v), causal=causal)
    repeated = F.scaled_dot_product_attention(make(q), make(k.repeat(3, axis=2)), make(v.repeat(3, axis=2)),
                                              causal=causal)
    assert grouped.shape == (2, 2, 3, 4, 6)
    np.testing.assert_allclose(host(grouped), host(repeated), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("causal", [True, False])
def test_grouped_attention_gradients_match_finite_differences(make, rng, causal):
    q, k, v = (make(a, requires_grad=True) for a in grouped_qkv(rng))
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, causal=causal), q, k, v)


def test_grouped_attention_with_cached_keys_gradients_match_finite_differences(make, rng):
    q = make(rng.normal(size=(1, 2, 3, 2, 4)), requires_grad=True)  # the last 2 of 5 positions
    k, v = (make(rng.normal(size=(1, 2, 1, 5, 4)), requires_grad=True) for _ in range(2))
    assert gradcheck(F.scaled_dot_product_attention, q, k, v)


def test_grouped_attention_leaves_q_k_and_v_unchanged(make, rng):
    arrays = grouped_qkv(rng)
    q, k, v = (make(a, requires_grad=True) for a in arrays)
    out = F.scaled_dot_product_attention(q, k, v)
    out.backward(make(rng.normal(size=out.shape)))
    for t, before in zip((q, k, v), arrays):
        np.testing.assert_array_equal(host(t), before)


def test_cross_entropy_over_more_rows_than_one_block_matches_the_formula(make, rng):
    logits = rng.normal(size=(150, 7)) * 5  # 150 rows: blocks of 64, 64 and 22
    targets = rng.integers(0, 7, 150)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = F.cross_entropy(make(logits), targets)
    np.testing.assert_allclose(loss.item(), -log_probs[np.arange(150), targets].mean(), rtol=1e-12)


def test_cross_entropy_over_more_rows_than_one_block_gradients_match_finite_differences(make, rng):
    logits = make(rng.normal(size=(70, 3)), requires_grad=True)  # blocks of 64 and 6 rows
    targets = rng.integers(0, 3, 70)
    assert gradcheck(lambda x: F.cross_entropy(x, targets), logits)


def test_cross_entropy_leaves_the_logits_unchanged(make, rng):
    array = rng.normal(size=(3, 4, 5))
    logits = make(array, requires_grad=True)
    F.cross_entropy(logits, rng.integers(0, 5, (3, 4))).backward()
    np.testing.assert_array_equal(host(logits), array)
