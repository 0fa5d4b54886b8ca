"""LoRA: the forward pass (6), merge and unmerge (7), trainable parameters (8), subspace similarity (9).

The expected answers come from tinylora's own ``LoRALinear``, ``count_parameters`` and
``experiments.analysis.subspace_similarity``.
"""
from __future__ import annotations

import math

import numpy as np

from ..experiments.analysis import subspace_similarity as _reference_subspace_similarity
from ..lora import LoraConfig, LoRALinear, apply_lora, count_parameters
from ..nn import Linear, Sequential, no_init
from ..tensor import Tensor
from .engine import Exercise, Mistake, Output, Part, check

__all__ = ["check_lora_forward", "check_merge_unmerge", "check_lora_trainable_params",
           "check_subspace_similarity", "lora_layer", "draw_adapter"]


def lora_layer(W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float, r: int, **config) -> LoRALinear:
    """tinylora's own LoRALinear holding exactly these weights (float64)."""
    out_f, in_f = W0.shape
    layer = LoRALinear(Linear(in_f, out_f, bias=False, dtype=np.float64))
    layer.base_layer.weight.data = W0.copy()
    layer.add_adapter("default", LoraConfig(r=r, lora_alpha=alpha, **config), np.random.default_rng(0))
    adapter = layer.adapters["default"]
    adapter.lora_A.data, adapter.lora_B.data = A.copy(), B.copy()
    layer.active_adapter = "default"
    return layer


def draw_adapter(rng, k, square=False):
    """W0 (out, in), A (r, in), B (out, r), alpha, r. Odd k: an int alpha that r does not divide."""
    sizes = (int(rng.integers(3, 9)),) * 2 if square else (int(rng.integers(2, 11)), int(rng.integers(2, 11)))
    out_f, in_f = sizes
    r = int(rng.integers(3, 9)) if k % 2 else int(rng.integers(1, 9))
    alpha = int(r * rng.integers(1, 5) + rng.integers(1, r)) if k % 2 else float(rng.choice([8.0, 16.0, 2.5]))
    W0, A, B = (rng.standard_normal(s) for s in ((out_f, in_f), (r, in_f), (out_f, r)))
    return {"W0": W0, "A": A, "B": B, "alpha": alpha, "r": r}


# ---- 6. LoRA forward ---------------------------------------------------------------------------
def _forward_draw(rng, k):
    w = draw_adapter(rng, k, square=k == 0)
    lead = [(3,), (2, 3), (1,), (2, 2, 2), (5,), (4,)][k]
    return {"x": rng.standard_normal(lead + (w["W0"].shape[1],)), **w}


def _h(x, W0, A, B, s, frozen=True, w0_transposed=True, ba=False):
    base = (x @ W0.T if w0_transposed else x @ W0) if frozen else 0.0
    return base + s * (x @ (B @ A) if ba else x @ A.T @ B.T)


LORA_FORWARD = Exercise(
    6, "lora_forward", "LoRA forward", (Part("lora_forward", (Output("h"),), _forward_draw,
        lambda x, W0, A, B, alpha, r: lora_layer(W0, A, B, alpha, r)(Tensor(x)).data, (
        Mistake("no_scaling", lambda x, W0, A, B, a, r: _h(x, W0, A, B, 1.0),
                "forgot the scaling: the adapter's output is multiplied by alpha/r."),
        Mistake("r_over_alpha", lambda x, W0, A, B, a, r: _h(x, W0, A, B, r / a),
                "the scaling is alpha/r, not r/alpha."),
        Mistake("rslora", lambda x, W0, A, B, a, r: _h(x, W0, A, B, a / math.sqrt(r)),
                "alpha/√r is rsLoRA's scaling; plain LoRA uses alpha/r."),
        Mistake("floor_division", lambda x, W0, A, B, a, r: _h(x, W0, A, B, a // r),
                "alpha // r rounds down when r does not divide alpha: use alpha / r."),
        Mistake("no_frozen_path", lambda x, W0, A, B, a, r: _h(x, W0, A, B, a / r, frozen=False),
                "forgot the frozen path: h starts with x W0ᵀ."),
        Mistake("w0_untransposed", lambda x, W0, A, B, a, r: _h(x, W0, A, B, a / r, w0_transposed=False),
                "W0 is (out, in), so the frozen path is x @ W0.T."),
        Mistake("ba_untransposed", lambda x, W0, A, B, a, r: _h(x, W0, A, B, a / r, ba=True),
                "ΔW = B A is (out, in) like W0, so its path is x @ (B @ A).T = x @ A.T @ B.T."),
    )),),
    hint="the layer adds a scaled low-rank path to the frozen one; mind which axis of each matrix is 'in'.",
    formula="h = x W0ᵀ + (alpha/r) · x Aᵀ Bᵀ, with W0 (out, in), A (r, in), B (out, r) and x (..., in).",
    points=1, minutes=10, checker="check_lora_forward",
    error_hint="shapes: x (..., in), W0 (out, in), A (r, in), B (out, r). x @ W0.T is (..., out); "
               "x @ A.T is (..., r), and that @ B.T is (..., out).")


def check_lora_forward(lora_forward, *, seed=None, hint=False) -> bool:
    """Exercise 6: ``lora_forward(x, W0, A, B, alpha, r) -> h = x W0ᵀ + (alpha/r) x Aᵀ Bᵀ``."""
    __tracebackhide__ = True
    return check(LORA_FORWARD, [lora_forward], seed, hint)


# ---- 7. merge and unmerge ----------------------------------------------------------------------
def _merged(W0, A, B, alpha, r):
    layer = lora_layer(W0, A, B, alpha, r)
    layer.merge()
    return layer.base_layer.weight.data


def _unmerged(W, A, B, alpha, r):
    layer = lora_layer(W, A, B, alpha, r)
    layer.merged_adapter = "default"          # W already holds the update
    layer.unmerge()
    return layer.base_layer.weight.data


def _unmerge_draw(rng, k):
    w = draw_adapter(rng, k, square=k == 0)
    return {"W": w.pop("W0"), **w}


MERGE_UNMERGE = Exercise(
    7, "merge_unmerge", "merge and unmerge", (
        Part("merge", (Output("W", shape_of="W0"),), lambda rng, k: draw_adapter(rng, k, square=k == 0),
             _merged, (
            Mistake("no_scaling", lambda W0, A, B, a, r: W0 + B @ A,
                    "forgot the scaling: W = W0 + (alpha/r)·B A."),
            Mistake("r_over_alpha", lambda W0, A, B, a, r: W0 + (r / a) * B @ A,
                    "the scaling is alpha/r, not r/alpha."),
            Mistake("no_w0", lambda W0, A, B, a, r: (a / r) * B @ A,
                    "forgot W0: merging adds the update to the frozen weight."),
            Mistake("subtracts", lambda W0, A, B, a, r: W0 - (a / r) * B @ A,
                    "merge adds the update; unmerge subtracts it."),
            Mistake("transposed", lambda W0, A, B, a, r: W0 + (a / r) * (B @ A).T,
                    "ΔW = B @ A is (out, in); you added its transpose."),
            Mistake("floor_division", lambda W0, A, B, a, r: W0 + (a // r) * B @ A,
                    "alpha // r rounds down when r does not divide alpha: use alpha / r."),
        )),
        Part("unmerge", (Output("W0", shape_of="W"),), _unmerge_draw, _unmerged, (
            Mistake("adds", lambda W, A, B, a, r: W + (a / r) * B @ A,
                    "unmerge subtracts the update that merge added."),
            Mistake("no_scaling", lambda W, A, B, a, r: W - B @ A,
                    "forgot the scaling: W0 = W − (alpha/r)·B A."),
            Mistake("floor_division", lambda W, A, B, a, r: W - (a // r) * B @ A,
                    "alpha // r rounds down when r does not divide alpha: use alpha / r."),
        ))),
    hint="merge folds the adapter's update into the weight; unmerge takes exactly that update out again.",
    formula="merge: W = W0 + (alpha/r)·B A; unmerge: W0 = W − (alpha/r)·B A, both (out, in).",
    points=1, minutes=10, checker="check_merge_unmerge",
    error_hint="W0 is (out, in), A is (r, in), B is (out, r): B @ A is (out, in).")


def check_merge_unmerge(merge, unmerge, *, seed=None, hint=False) -> bool:
    """Exercise 7: ``merge(W0, A, B, alpha, r)`` and ``unmerge(W, A, B, alpha, r)``.

    unmerge(merge(W0)) == W0.
    """
    __tracebackhide__ = True
    return check(MERGE_UNMERGE, [merge, unmerge], seed, hint)


# ---- 8. counting trainable parameters ----------------------------------------------------------
def _trainable_draw(rng, k):
    n, r = int(rng.integers(2, 7)), int(rng.integers(1, 17))
    shapes = [(int(rng.integers(r, 300)), int(rng.integers(r, 300))) for _ in range(n)]
    return {"layer_shapes": shapes, "r": r}


def _trainable_reference(layer_shapes, r):
    with no_init():
        model = Sequential(*(Linear(i, o, bias=False) for o, i in layer_shapes))
    return count_parameters(apply_lora(model, LoraConfig(r=r, target_modules="all-linear")))[0]


TRAINABLE = Exercise(
    8, "trainable_params", "trainable parameters", (Part("lora_trainable_params", (
        Output("count", kind="int"),), _trainable_draw, _trainable_reference, (
        Mistake("product", lambda s, r: sum(r * o * i for o, i in s),
                "A and B are two thin matrices, r·d_in + d_out·r, not r·d_in·d_out."),
        Mistake("full", lambda s, r: sum(o * i for o, i in s),
                "d_out·d_in is what full fine-tuning trains; LoRA trains r·(d_in + d_out)."),
        Mistake("first_layer", lambda s, r: r * sum(s[0]),
                "add the count up over every layer, not just the first."),
        Mistake("a_only", lambda s, r: sum(r * i for o, i in s),
                "you counted A (r·d_in) only; B adds d_out·r."),
        Mistake("b_only", lambda s, r: sum(r * o for o, i in s),
                "you counted B (d_out·r) only; A adds r·d_in."),
        Mistake("twice", lambda s, r: 2 * sum(r * (o + i) for o, i in s),
                "each layer has one A and one B: r·(d_in + d_out), counted once."),
    )),),
    hint="write down the shapes of A and B for one layer of shape (d_out, d_in), then add over layers.",
    formula="Σ over layers of r·(d_in + d_out).",
    points=1, minutes=5, checker="check_lora_trainable_params",
    error_hint="layer_shapes is a list of (d_out, d_in) pairs, one per adapted layer; r is an int.")


def check_lora_trainable_params(lora_trainable_params, *, seed=None, hint=False) -> bool:
    """Exercise 8: ``lora_trainable_params(layer_shapes, r)``, as ``count_parameters`` counts it."""
    __tracebackhide__ = True
    return check(TRAINABLE, [lora_trainable_params], seed, hint)


# ---- 9. subspace similarity --------------------------------------------------------------------
def _subspace_draw(rng, k):
    n = int(rng.integers(40, 80)) if k == 5 else int(rng.integers(8, 17))
    r1, r2 = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    A1, A2 = rng.standard_normal((r1, n)), rng.standard_normal((r2, n))
    if k == 3:
        A1 = rng.standard_normal((r1, r2)) @ A2            # rows inside A2's row space
    if k == 4:
        A1 = A1 * rng.uniform(0.1, 10, size=(r1, 1))
    i, j = [(2, 2), (1, 3), (3, 1), (2, 3), (3, 2), (2, 2)][k]
    return {"A1": A1, "A2": A2, "i": i, "j": j}


def _rows(A, i):
    return np.linalg.svd(A, full_matrices=False)[2][:i]


def _phi(A1, A2, i, j, square=True, raw=False):
    U, V = (A1[:i], A2[:j]) if raw else (_rows(A1, i), _rows(A2, j))
    total = float(np.sum((U @ V.T) ** 2))
    return total if square else math.sqrt(total)


SUBSPACE = Exercise(
    9, "subspace_similarity", "subspace similarity", (Part("subspace_similarity", (
        Output("phi", kind="scalar"),), _subspace_draw, _reference_subspace_similarity, (
        Mistake("no_min", lambda A1, A2, i, j: _phi(A1, A2, i, j),
                "divide by min(i, j): that makes φ a number in [0, 1]."),
        Mistake("max", lambda A1, A2, i, j: _phi(A1, A2, i, j) / max(i, j),
                "divide by min(i, j), not max(i, j)."),
        Mistake("no_square", lambda A1, A2, i, j: _phi(A1, A2, i, j, square=False) / min(i, j),
                "square the Frobenius norm: ‖U_iᵀ V_j‖_F²."),
        Mistake("raw_rows", lambda A1, A2, i, j: _phi(A1, A2, i, j, raw=True) / min(i, j),
                "use the right-singular vectors (rows of Vt from np.linalg.svd), not the rows of A1 and A2."),
    )),),
    hint="φ compares the directions two matrices' rows span (their top singular directions), on a 0..1 "
         "scale.",
    formula="φ = ‖U_iᵀ V_j‖_F² / min(i, j), with U_i the top-i right-singular vectors of A1 (the first i "
            "rows of Vᵀ from np.linalg.svd(A1)) and V_j the top-j of A2.",
    points=2, minutes=20, checker="check_subspace_similarity",
    error_hint="np.linalg.svd(A) returns (U, S, Vt); the right-singular vectors of A (r, in) are the rows of "
               "Vt. Use full_matrices=False.",
    nan_hint="φ is finite for any A1, A2; check for a division by zero.")


def check_subspace_similarity(subspace_similarity, *, seed=None, hint=False) -> bool:
    """Exercise 9: ``subspace_similarity(A1, A2, i, j)`` = ‖U_iᵀ V_j‖_F² / min(i, j)."""
    __tracebackhide__ = True
    return check(SUBSPACE, [subspace_similarity], seed, hint)
