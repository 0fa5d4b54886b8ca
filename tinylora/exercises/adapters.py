"""Exercises 6-9, LoRA: the forward pass, merge and unmerge, trainable parameters, subspace similarity.

The expected answers come from tinylora's own ``LoRALinear``, ``count_parameters`` and
``experiments.analysis.subspace_similarity``.
"""
from __future__ import annotations

import math

import numpy as np

from ..experiments.analysis import subspace_similarity as _reference_subspace_similarity
from ..lora import LoraConfig, LoRALinear, apply_lora, count_parameters, lora_layers
from ..models.gpt import GPT, GPTConfig
from ..nn import Linear
from ..tensor import Tensor
from .engine import Case, Exercise, Output, case_rng, grade, maybe, passed

__all__ = ["check_lora_forward", "check_merge_unmerge", "check_lora_trainable_params",
           "check_subspace_similarity"]


# ---- 6. LoRA forward ---------------------------------------------------------------------------
_LORA_FORWARD = Exercise(
    6, "LoRA forward", (Output("h"),),
    hint="h = x W0ᵀ + (alpha/r) · x Aᵀ Bᵀ, with W0 (out, in), A (r, in), B (out, r) and x (..., in).",
    error_hint="shapes: x (..., in), W0 (out, in), A (r, in), B (out, r). x @ W0.T is (..., out); "
               "x @ A.T is (..., r), and that @ B.T is (..., out).")


def _lora_layer(W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float, r: int) -> LoRALinear:
    """tinylora's own LoRALinear holding exactly these weights."""
    out_f, in_f = W0.shape
    layer = LoRALinear(Linear(in_f, out_f, bias=False, dtype=np.float64))
    layer.base_layer.weight.data = W0.copy()
    layer.add_adapter("default", LoraConfig(r=r, lora_alpha=alpha), np.random.default_rng(0))
    adapter = layer.adapters["default"]
    adapter.lora_A.data, adapter.lora_B.data = A.copy(), B.copy()
    layer.active_adapter = "default"
    return layer


def _lora_forward_case(x, W0, A, B, alpha, r) -> Case:
    base, low = x @ W0.T, x @ A.T @ B.T
    return Case({"x": x, "W0": W0, "A": A, "B": B, "alpha": alpha, "r": r},
                (_lora_layer(W0, A, B, alpha, r)(Tensor(x)).data,), [
        (0, base + low, "forgot the scaling: the adapter's output is multiplied by alpha/r."),
        (0, base + (r / alpha) * low, "the scaling is alpha/r, not r/alpha."),
        (0, base + (alpha / math.sqrt(r)) * low, "alpha/√r is rsLoRA's scaling; plain LoRA uses alpha/r."),
        (0, (alpha / r) * low, "forgot the frozen path: h starts with x W0ᵀ."),
        (0, base, "the adapter path is missing: add (alpha/r) · x Aᵀ Bᵀ."),
        (0, maybe(lambda: x @ W0), "missing transpose: W0 is (out, in), so the frozen path is x @ W0.T."),
        (0, maybe(lambda: x @ W0 + (alpha / r) * low),
         "missing transpose: W0 is (out, in), so the frozen path is x @ W0.T."),
        (0, maybe(lambda: base + (alpha / r) * x @ (B @ A)),
         "ΔW = B A is (out, in) like W0, so its path is x @ (B @ A).T = x @ A.T @ B.T."),
    ])


def check_lora_forward(lora_forward) -> bool:
    """Exercise 6: ``lora_forward(x, W0, A, B, alpha, r) -> h = x W0ᵀ + (alpha/r) x Aᵀ Bᵀ``."""
    __tracebackhide__ = True
    rng = case_rng(6)
    cases = []
    for lead, out_f, in_f, r, alpha in [((5,), 4, 6, 2, 8), ((2, 3), 6, 6, 3, 6.0), ((1,), 7, 4, 1, 4),
                                        ((4,), 3, 5, 4, 16)]:
        x = rng.standard_normal(lead + (in_f,))
        W0, A, B = (rng.standard_normal(s) for s in ((out_f, in_f), (r, in_f), (out_f, r)))
        cases.append(_lora_forward_case(x, W0, A, B, alpha, r))
    return passed(6, grade(_LORA_FORWARD, lora_forward, cases))


# ---- 7. merge and unmerge ----------------------------------------------------------------------
_MERGE = Exercise(
    7, "merge", (Output("W", shape_of="W0"),),
    hint="merge returns W = W0 + (alpha/r) · B A, of shape (out, in) like W0.",
    error_hint="W0 is (out, in), A is (r, in), B is (out, r): B @ A is (out, in).")
_UNMERGE = Exercise(
    7, "unmerge", (Output("W0", shape_of="W"),),
    hint="unmerge undoes merge: W0 = W − (alpha/r) · B A.",
    error_hint=_MERGE.error_hint)


def _merge_cases(W0, A, B, alpha, r) -> tuple[Case, Case]:
    layer = _lora_layer(W0, A, B, alpha, r)
    layer.merge()
    W = layer.base_layer.weight.data.copy()
    layer.unmerge()
    s, BA = alpha / r, B @ A
    merge = Case({"W0": W0, "A": A, "B": B, "alpha": alpha, "r": r}, (W,), [
        (0, W0 + BA, "forgot the scaling: W = W0 + (alpha/r) · B A."),
        (0, W0 + BA * (r / alpha), "the scaling is alpha/r, not r/alpha."),
        (0, s * BA, "forgot W0: merging adds the update to the frozen weight."),
        (0, W0 - s * BA, "merge adds the update; unmerge subtracts it."),
        (0, maybe(lambda: W0 + s * BA.T), "ΔW = B @ A (out, in), not Aᵀ @ Bᵀ (its transpose)."),
    ])
    unmerge = Case({"W": W, "A": A, "B": B, "alpha": alpha, "r": r}, (layer.base_layer.weight.data.copy(),), [
        (0, W + s * BA, "unmerge subtracts the update that merge added: W0 = W − (alpha/r) · B A."),
        (0, W - BA, "forgot the scaling: W0 = W − (alpha/r) · B A."),
        (0, W - BA * (r / alpha), "the scaling is alpha/r, not r/alpha."),
    ])
    return merge, unmerge


def check_merge_unmerge(merge, unmerge) -> bool:
    """Exercise 7: ``merge(W0, A, B, alpha, r)`` and ``unmerge(W, A, B, alpha, r)``.

    unmerge(merge(W0)) == W0.
    """
    __tracebackhide__ = True
    rng = case_rng(7)
    pairs = []
    for out_f, in_f, r, alpha in [(4, 6, 2, 4), (5, 5, 3, 1.5), (8, 3, 1, 16), (6, 6, 6, 12)]:
        W0, A, B = (rng.standard_normal(s) for s in ((out_f, in_f), (r, in_f), (out_f, r)))
        pairs.append(_merge_cases(W0, A, B, alpha, r))
    count = grade(_MERGE, merge, [m for m, _ in pairs], "merge")
    count += grade(_UNMERGE, unmerge, [u for _, u in pairs], "unmerge")
    return passed(7, count)


# ---- 8. counting trainable parameters ----------------------------------------------------------
_TRAINABLE = Exercise(
    8, "trainable parameters", (Output("count", kind="int"),),
    hint="each adapted layer of shape (d_out, d_in) trains A (r, d_in) and B (d_out, r): r·(d_in + d_out) "
         "parameters; add this up over all layers.",
    error_hint="layer_shapes is a list of (d_out, d_in) pairs, one per adapted layer; r is an int.")


def _trainable_case(preset: str, r: int, targets) -> Case:
    model = apply_lora(GPT(GPTConfig.preset(preset), seed=0), LoraConfig(r=r, target_modules=targets))
    shapes = [tuple(int(n) for n in layer.base_layer.weight.shape) for _, layer in lora_layers(model)]
    one = r * sum(shapes[0])
    return Case({"layer_shapes": shapes, "r": r}, (count_parameters(model)[0],), [
        (0, sum(r * o * i for o, i in shapes),
         "A and B are two thin matrices, r·d_in + d_out·r, not r·d_in·d_out."),
        (0, sum(o * i for o, i in shapes),
         "d_out·d_in is what full fine-tuning trains; LoRA trains r·(d_in + d_out)."),
        (0, one, "add the count up over every layer in layer_shapes, not just the first."),
        (0, sum(r * i for o, i in shapes), "you counted A (r·d_in) only; B adds d_out·r."),
        (0, sum(r * o for o, i in shapes), "you counted B (d_out·r) only; A adds r·d_in."),
        (0, 2 * sum(r * (o + i) for o, i in shapes),
         "each layer has one A and one B: r·(d_in + d_out), counted once."),
    ])


def check_lora_trainable_params(lora_trainable_params) -> bool:
    """Exercise 8: ``lora_trainable_params(layer_shapes, r)``, ``count_parameters`` of a GPT with LoRA."""
    __tracebackhide__ = True
    specs = [("nano", 4, ("q_proj", "v_proj")), ("nano", 1, "all-linear"),
             ("micro", 8, ("q_proj", "k_proj", "v_proj", "o_proj")),
             ("micro", 2, ("fc_in", "fc_out"))]
    cases = [_trainable_case(*spec) for spec in specs]
    return passed(8, grade(_TRAINABLE, lora_trainable_params, cases))


# ---- 9. subspace similarity --------------------------------------------------------------------
_SUBSPACE = Exercise(
    9, "subspace similarity", (Output("phi", kind="scalar"),),
    hint="φ = ‖U_iᵀ V_j‖_F² / min(i, j), with U_i the top-i right-singular vectors of A1 (the first i rows "
         "of Vᵀ from np.linalg.svd(A1)) and V_j the top-j of A2.",
    error_hint="np.linalg.svd(A) returns (U, S, Vt); the right-singular vectors of A (r, in) are the rows of "
               "Vt, each of length in. Use full_matrices=False.",
    nan_hint="φ is finite for any A1, A2; check for a division by zero.")


def _subspace_case(A1, A2, i, j) -> Case:
    v1 = np.linalg.svd(A1, full_matrices=False)[2]
    v2 = np.linalg.svd(A2, full_matrices=False)[2]
    squared = float(np.sum((v1[:i] @ v2[:j].T) ** 2))
    raw = float(np.sum((A1[:i] @ A2[:j].T) ** 2)) / min(i, j)
    return Case({"A1": A1, "A2": A2, "i": i, "j": j}, (_reference_subspace_similarity(A1, A2, i, j),), [
        (0, squared, "divide by min(i, j): that makes φ a number in [0, 1]."),
        (0, squared / max(i, j), "divide by min(i, j), not max(i, j)."),
        (0, math.sqrt(squared) / min(i, j), "square the Frobenius norm: ‖U_iᵀ V_j‖_F²."),
        (0, raw, "use the right-singular vectors (rows of Vt from "
                 "np.linalg.svd), not the rows of A1 and A2 themselves."),
    ])


def check_subspace_similarity(subspace_similarity) -> bool:
    """Exercise 9: ``subspace_similarity(A1, A2, i, j)`` = ‖U_iᵀ V_j‖_F² / min(i, j)."""
    __tracebackhide__ = True
    rng = case_rng(9)
    eye = np.eye(4)
    big1, big2 = rng.standard_normal((8, 16)), rng.standard_normal((4, 16))
    mixed = rng.standard_normal((4, 4)) @ big2            # the same row space as big2
    cases = [_subspace_case(eye[:2], eye[1:3], 2, 2), _subspace_case(big1, big2, 3, 2),
             _subspace_case(big1, big2, 1, 4), _subspace_case(big1, big2, 8, 4),
             _subspace_case(mixed, big2, 4, 4),
             _subspace_case(big1 * np.arange(1, 9)[:, None], big1, 2, 5)]
    return passed(9, grade(_SUBSPACE, subspace_similarity, cases))

