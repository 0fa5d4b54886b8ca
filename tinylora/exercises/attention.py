"""Exercises 5 and 10, attention: the causal mask, and the causally masked softmax weights.

The expected answers come from tinylora's own ``scaled_dot_product_attention(..., causal=True)``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .backprop import _softmax_rows
from .engine import Case, Exercise, Output, case_rng, grade, passed

__all__ = ["check_causal_mask", "check_masked_attention_weights"]


# ---- 5. the causal mask ------------------------------------------------------------------------
_CAUSAL_MASK = Exercise(
    5, "causal mask", (Output("mask", kind="bool"),),
    hint="mask[i, j] is True when query i may attend to key j, that is when j ≤ i (the past and itself): "
         "the lower triangle including the diagonal.")


def _allowed_by_attention(T: int) -> np.ndarray:
    """Where tinylora's causal attention puts weight: with equal scores and v = I, probs > 0 exactly there."""
    zeros = Tensor(np.zeros((T, 1)))
    return F.scaled_dot_product_attention(zeros, zeros, Tensor(np.eye(T)), causal=True).data > 0


def _causal_mask_case(T: int) -> Case:
    ones = np.ones((T, T), dtype=bool)
    return Case({"T": T}, (_allowed_by_attention(T),), [
        (0, np.tril(ones, k=-1),
         "off by one: the diagonal must be True, since a token may attend to itself."),
        (0, np.triu(ones, k=1),
         "inverted: True means *may attend*, so row i is True for j ≤ i, not for the future."),
        (0, np.triu(ones),
         "transposed: row i is the query and column j the key; query i may see keys j ≤ i."),
        (0, ones, "nothing is masked: the future keys j > i must be False."),
    ])


def check_causal_mask(causal_mask) -> bool:
    """Exercise 5: ``causal_mask(T)`` -> (T, T) bool, True where query i may attend to key j."""
    __tracebackhide__ = True
    return passed(5, grade(_CAUSAL_MASK, causal_mask, [_causal_mask_case(T) for T in (1, 2, 5, 8)]))


# ---- 10. masked attention weights --------------------------------------------------------------
_MASKED_ATTENTION = Exercise(
    10, "masked attention weights", (Output("weights", shape_of="scores"),),
    hint="set scores[..., i, j] to −inf where j > i, then take the softmax along the last axis (over keys).",
    nan_hint="NaN comes from a row whose every score is −inf (exp gives 0/0: is the diagonal allowed?) or "
             "from exp overflowing (subtract each row's max before exp).")


def _attention_expected(scores: np.ndarray) -> np.ndarray:
    """tinylora's causal attention with q = scores·√T, k = v = I gives exactly softmax(masked scores)."""
    T = scores.shape[-1]
    q, eye = Tensor(scores * math.sqrt(T)), Tensor(np.eye(T))
    return F.scaled_dot_product_attention(q, eye, eye, causal=True).data


def _masked_attention_case(scores: np.ndarray) -> Case:
    T = scores.shape[-1]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    p = _softmax_rows(scores)
    zeroed = np.where(future, 0.0, p)
    return Case({"scores": scores}, (_attention_expected(scores),), [
        (0, zeroed,
         "mask *before* the softmax: zeroing weights afterwards leaves rows that no longer sum to 1."),
        (0, _softmax_rows(np.where(future, 0.0, scores)),
         "a masked score must be −inf (or very negative), not 0: "
         "exp(0) = 1 still gives the future some weight."),
        (0, p, "apply the causal mask: query i must give zero weight to keys j > i."),
        (0, _softmax_rows(np.where(future.T, -np.inf, scores)) if T > 1 else None,
         "the mask is transposed: row i is the query, and it may see keys j ≤ i."),
        (0, _softmax_rows(np.where(future, -np.inf, scores), axis=-2),
         "softmax along the wrong axis: each query's weights over the keys (the last axis) sum to 1."),
    ])


def check_masked_attention_weights(masked_attention_weights) -> bool:
    """Exercise 10: ``masked_attention_weights(scores)`` = softmax over keys of the causally masked scores."""
    __tracebackhide__ = True
    rng = case_rng(10)
    shapes = [((4, 4), 1.0), ((2, 3, 5, 5), 1.0), ((1, 1), 1.0), ((3, 6, 6), 100.0)]
    cases = [_masked_attention_case(rng.standard_normal(s) * scale) for s, scale in shapes]
    return passed(10, grade(_MASKED_ATTENTION, masked_attention_weights, cases))

