"""Attention: the causal mask (5), masked weights (10), attention backward (13), a step with a KV cache (21).

The expected answers come from tinylora's own ``scaled_dot_product_attention``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .backprop import _grad_of, _logits, softmax_rows
from .engine import Exercise, Mistake, Output, Part, check

__all__ = ["check_causal_mask", "check_masked_attention_weights", "check_attention_backward",
           "check_attention_with_cache"]


def _tri(T: int, S: int | None = None, k: int = 0) -> np.ndarray:
    """True where key j ≤ query i + k."""
    return np.tril(np.ones((T, T if S is None else S), dtype=bool), k=k)


# ---- 5. the causal mask ------------------------------------------------------------------------
def _allowed_by_attention(T: int) -> np.ndarray:
    """Where tinylora's causal attention puts weight: with equal scores and v = I, probs > 0 exactly there."""
    zeros = Tensor(np.zeros((T, 1)))
    return F.scaled_dot_product_attention(zeros, zeros, Tensor(np.eye(T)), causal=True).data > 0


CAUSAL_MASK = Exercise(
    5, "causal_mask", "causal mask", (Part("causal_mask", (Output("mask", kind="bool"),),
        lambda rng, k: {"T": int(rng.integers(*[(1, 5), (5, 9), (17, 41), (41, 81), (9, 17), (2, 3)][k]))},
        _allowed_by_attention, (
        Mistake("no_diagonal", lambda T: _tri(T, k=-1),
                "off by one: the diagonal must be True, since a token may attend to itself."),
        Mistake("inverted", lambda T: ~_tri(T), "inverted: True means *may attend*, not *is masked*."),
        Mistake("transposed", lambda T: _tri(T).T,
                "transposed: row i is the query and column j the key; query i may see keys j ≤ i."),
        Mistake("nothing_masked", lambda T: np.ones((T, T), dtype=bool),
                "nothing is masked: the future keys j > i must be False."),
        Mistake("fixed_size", lambda T: _tri(16)[:T, :T],
                "your mask stops at a fixed size: build it for the T you are given, e.g. with np.tril."),
    )),),
    hint="which keys may query i see? Only the past and itself. Write the answer for T = 3 by hand first.",
    formula="mask[i, j] = (j ≤ i): the lower triangle including the diagonal, np.tril(np.ones((T, T), "
            "dtype=bool)).",
    points=1, minutes=5, checker="check_causal_mask")


def check_causal_mask(causal_mask, *, seed=None, hint=False) -> bool:
    """Exercise 5: ``causal_mask(T)`` -> (T, T) bool, True where query i may attend to key j.

    >>> import numpy as np
    >>> check_causal_mask(lambda T: np.tril(np.ones((T, T), dtype=bool)), seed=1)
    ✓ Exercise 5 passed (6 cases, seed 1)
    True
    """
    __tracebackhide__ = True
    return check(CAUSAL_MASK, [causal_mask], seed, hint)


# ---- 10. masked attention weights --------------------------------------------------------------
def _scores_draw(rng, k):
    T = [int(rng.integers(2, 7)), int(rng.integers(3, 7)), int(rng.integers(17, 61)), int(rng.integers(3, 9)),
         1, int(rng.integers(3, 9))][k]
    lead = [(), (2, 3), (2,), (3,), (1,), (2, 2)][k]
    return {"scores": _logits(rng, [0, 0, 0, 1, 0, 4][k], lead + (T, T))}


def _attention_expected(scores: np.ndarray) -> np.ndarray:
    """tinylora's causal attention with q = scores·√T, k = v = I gives exactly softmax(masked scores)."""
    T = scores.shape[-1]
    q, eye = Tensor(scores * math.sqrt(T)), Tensor(np.eye(T))
    return F.scaled_dot_product_attention(q, eye, eye, causal=True).data


def _masked(s, allowed, fill=-np.inf):
    return np.where(allowed, s, fill)


MASKED_ATTENTION = Exercise(
    10, "masked_attention", "masked attention weights", (Part("masked_attention_weights", (
        Output("weights", shape_of="scores"),), _scores_draw, _attention_expected, (
        Mistake("zeroed_after", lambda s: np.where(_tri(s.shape[-1]), softmax_rows(s), 0.0),
                "mask *before* the softmax: zeroing weights afterwards leaves rows that no longer sum to 1."),
        Mistake("fill_zero", lambda s: softmax_rows(_masked(s, _tri(s.shape[-1]), 0.0)),
                "a masked score must be −inf (or very negative), not 0: exp(0) = 1 still gives the future "
                "some weight."),
        Mistake("no_mask", lambda s: softmax_rows(s),
                "apply the causal mask: query i must give zero weight to keys j > i."),
        Mistake("transposed", lambda s: softmax_rows(_masked(s, _tri(s.shape[-1]).T)),
                "the mask is transposed: row i is the query, and it may see keys j ≤ i."),
        Mistake("axis", lambda s: softmax_rows(_masked(s, _tri(s.shape[-1])), axis=-2),
                "softmax along the wrong axis: each query's weights over the keys (the last axis) sum to 1."),
        Mistake("unstable", lambda s: softmax_rows(_masked(s, _tri(s.shape[-1])), stable=False),
                "scores in the hundreds overflow exp: subtract each row's max (over the allowed keys) "
                "before exp."),
        Mistake("diagonal_masked", lambda s: softmax_rows(_masked(s, _tri(s.shape[-1], k=-1))),
                "the diagonal is allowed: a query may attend to itself (row 0 has nothing else)."),
    )),),
    hint="mask first (a masked score must get exactly zero weight), then normalise over the keys.",
    formula="weights = softmax over the last axis of scores with scores[..., i, j] = −inf where j > i.",
    points=2, minutes=15, checker="check_masked_attention_weights",
    nan_hint="NaN comes from a row whose every score is −inf (is the diagonal allowed?) or from exp "
             "overflowing (subtract each row's max before exp).")


def check_masked_attention_weights(masked_attention_weights, *, seed=None, hint=False) -> bool:
    """Exercise 10: ``masked_attention_weights(scores)`` = softmax over keys of the causally masked scores."""
    __tracebackhide__ = True
    return check(MASKED_ATTENTION, [masked_attention_weights], seed, hint)


# ---- 13. attention backward --------------------------------------------------------------------
def _qkv_draw(rng, k):
    T = int(rng.integers(20, 51)) if k == 2 else int(rng.integers(2, 7))
    d = int(rng.integers(2, 9))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), T, d)
    q, kk, v, g = (rng.standard_normal(shape) for _ in range(4))
    return {"q": q, "k": kk, "v": v, "grad_out": g, "causal": k % 3 != 1}


def _attention_grads(q, k, v, g, causal, mask=True, scale=True, twice=False, p_transposed=True,
                     softmax_backward=True):
    d = q.shape[-1]
    s = 1 / math.sqrt(d) if scale else 1.0
    s = s / math.sqrt(d) if twice else s
    T = q.shape[-2]
    scores = q @ k.swapaxes(-1, -2) * (1 / math.sqrt(d))
    if causal:
        scores = np.where(_tri(T), scores, -np.inf)
    p = softmax_rows(scores)
    pb = softmax_rows(q @ k.swapaxes(-1, -2) / math.sqrt(d)) if causal and not mask else p
    dv = (p.swapaxes(-1, -2) if p_transposed else p) @ g
    dp = g @ v.swapaxes(-1, -2)
    ds = pb * (dp - (dp * pb).sum(-1, keepdims=True)) if softmax_backward else dp
    return ds @ k * s, ds.swapaxes(-1, -2) @ q * s, dv


ATTENTION_BACKWARD = Exercise(
    13, "attention_backward", "attention backward", (Part("attention_backward", (
        Output("dq", shape_of="q"), Output("dk", shape_of="k"), Output("dv", shape_of="v")), _qkv_draw,
        lambda q, k, v, grad_out, causal: _grad_of(
            lambda a, b, c: F.scaled_dot_product_attention(a, b, c, causal=causal), q, k, v, g=grad_out), (
        Mistake("mask_forgotten", lambda q, k, v, g, c: _attention_grads(q, k, v, g, c, mask=False),
                "the backward must use the same masked weights as the forward: the softmax backward runs "
                "on the masked P."),
        Mistake("no_scale", lambda q, k, v, g, c: _attention_grads(q, k, v, g, c, scale=False),
                "the scores are q kᵀ/√d, so dq and dk carry the factor 1/√d too."),
        Mistake("scaled_twice", lambda q, k, v, g, c: _attention_grads(q, k, v, g, c, twice=True),
                "the factor 1/√d appears once in dq and dk, not twice."),
        Mistake("dv_untransposed", lambda q, k, v, g, c: _attention_grads(q, k, v, g, c, p_transposed=False),
                "dv = Pᵀ grad_out: key j collects from every query that looked at it."),
        Mistake("no_softmax_backward", lambda q, k, v, g, c: _attention_grads(q, k, v, g, c,
                                                                             softmax_backward=False),
                "between dP and the scores sits the softmax: dS = P · (dP − Σ dP·P), not dS = dP."),
    )),),
    hint="go backward one step at a time: out = P v, P = softmax(S), S = q kᵀ/√d (masked when causal).",
    formula="S = q kᵀ/√d (−inf where j > i when causal), P = softmax(S); dv = Pᵀ g; dP = g vᵀ; "
            "dS = P·(dP − Σ_j dP·P); dq = dS k/√d; dk = dSᵀ q/√d.",
    points=3, minutes=35, checker="check_attention_backward",
    error_hint="q, k, v and grad_out are (B, H, T, d); use .swapaxes(-1, -2) for a batched transpose.")


def check_attention_backward(attention_backward, *, seed=None, hint=False) -> bool:
    """Exercise 13: ``attention_backward(q, k, v, grad_out, causal) -> (dq, dk, dv)``."""
    __tracebackhide__ = True
    return check(ATTENTION_BACKWARD, [attention_backward], seed, hint)


# ---- 21. one attention step with a KV cache ----------------------------------------------------
def _cache_draw(rng, k):
    S, T = [(0, rng.integers(3, 6)), (rng.integers(1, 9), 1), (rng.integers(20, 71), rng.integers(1, 5)),
            (rng.integers(5, 11), rng.integers(2, 6)), (rng.integers(70, 101), 1), (3, 6)][k]
    B, H, d = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(2, 9))
    new = [rng.standard_normal((B, H, int(T), d)) for _ in range(3)]
    cache = [rng.standard_normal((B, H, int(S), d)) for _ in range(2)]
    return dict(zip(("q", "k_new", "v_new", "k_cache", "v_cache"), new + cache))


def _cache_reference(q, k_new, v_new, k_cache, v_cache):
    keys, values = np.concatenate([k_cache, k_new], axis=2), np.concatenate([v_cache, v_new], axis=2)
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(keys), Tensor(values), causal=True).data
    return out, keys, values


def _cached(q, kn, vn, kc, vc, where="end", prepend=False, scale=True, use_cache=True):
    keys = np.concatenate([kn, kc] if prepend else [kc, kn], axis=2)
    values = np.concatenate([vn, vc] if prepend else [vc, vn], axis=2)
    K, V = (keys, values) if use_cache else (kn, vn)
    T, S = q.shape[2], K.shape[2]
    scores = q @ K.swapaxes(-1, -2) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    allowed = {"end": _tri(T, S, k=S - T), "start": _tri(T, S), "none": np.ones((T, S), bool)}[where]
    return softmax_rows(np.where(allowed, scores, -np.inf)) @ V, keys, values


ATTENTION_WITH_CACHE = Exercise(
    21, "attention_with_cache", "attention with a KV cache", (Part("attention_with_cache", (
        Output("out", shape_of="q"), Output("k_cache", shape_of="(B, H, S + T, d)"),
        Output("v_cache", shape_of="(B, H, S + T, d)")), _cache_draw, _cache_reference, (
        Mistake("cache_unused", lambda *a: _cached(*a, use_cache=False),
                "the new queries must also attend to the cached keys: concatenate the cache and the new "
                "keys first."),
        Mistake("mask_at_start", lambda *a: _cached(*a, where="start"),
                "the new queries are the *last* T positions: query i may see keys j ≤ S + i, not j ≤ i."),
        Mistake("no_mask", lambda *a: _cached(*a, where="none"),
                "with T > 1 new tokens, new query i must not see the new keys after it: mask j > S + i."),
        Mistake("prepended", lambda *a: _cached(*a, prepend=True),
                "the new keys go *after* the cached ones (axis 2 is time): np.concatenate([k_cache, k_new], "
                "axis=2)."),
        Mistake("no_scale", lambda *a: _cached(*a, scale=False), "the scores are q kᵀ/√d: divide by √d."),
    )),),
    hint="the cache holds positions 0 .. S−1 and the new tokens are positions S .. S+T−1; think about "
         "which keys new query i may see.",
    formula="K = concat(k_cache, k_new, axis=2), V likewise; out = softmax(q Kᵀ/√d with −inf where "
            "j > S + i) V; return (out, K, V).",
    points=3, minutes=25, checker="check_attention_with_cache",
    error_hint="q, k_new, v_new are (B, H, T, d); k_cache, v_cache are (B, H, S, d) and S may be 0.")


def check_attention_with_cache(attention_with_cache, *, seed=None, hint=False) -> bool:
    """Exercise 21: ``attention_with_cache(q, k_new, v_new, k_cache, v_cache) -> (out, k_cache, v_cache)``."""
    __tracebackhide__ = True
    return check(ATTENTION_WITH_CACHE, [attention_with_cache], seed, hint)
