"""Merging task vectors: TIES (23) and DARE (24), the rules ``add_weighted_adapter`` applies.

The expected answers come from ``tinylora.lora.merge.combine_tensors``, the function the merge types use.
"""
from __future__ import annotations

import numpy as np

from ..lora.merge import combine_tensors, prune_by_magnitude
from .engine import Exercise, Mistake, Output, Part, check

__all__ = ["check_ties_merge", "check_dare_linear"]


def _stack(rng, k):
    """(n, ...) task vectors: 2 to 4 of them, 1-D or 2-D, with signs that disagree in many entries."""
    n = [2, 3, 2, 4, 3, 2][k]
    shape = [(8,), (6,), (3, 4), (10,), (2, 5), (7,)][k]
    return rng.standard_normal((n,) + shape) * rng.uniform(0.5, 3.0, size=(n,) + (1,) * len(shape))


def _weights(rng, k, n):
    return [1.0] * n if k == 0 else [float(w) for w in rng.uniform(0.3, 2.0, n)]


# ---- 23. TIES ----------------------------------------------------------------------------------------
def _ties_draw(rng, k):
    stack = _stack(rng, k)
    return {"task_vectors": stack, "weights": _weights(rng, k, len(stack)),
            "density": [0.5, 1.0, 0.4, 0.3, 0.6, 0.75][k]}


def _ties_reference(task_vectors, weights, density):
    return combine_tensors(list(task_vectors), weights, "ties", density=density)


def _ties(tv, w, d, trim=True, elect="total", mean=True, over_all=False):
    stack = np.stack([prune_by_magnitude(t, d) for t in tv]) if trim else np.asarray(tv)
    weighted = stack * np.reshape(w, (-1,) + (1,) * (stack.ndim - 1))
    votes = {"total": stack.sum(0), "frequency": np.sign(stack).sum(0), "weighted": weighted.sum(0)}[elect]
    agree = np.sign(stack) == np.where(votes >= 0, 1.0, -1.0)
    kept = (weighted * agree).sum(0)
    if not mean:
        return kept
    return kept / (len(stack) if over_all else np.maximum(agree.sum(0), 1))


TIES = Exercise(
    23, "ties_merge", "TIES merging", (Part("ties_merge", (Output("merged"),), _ties_draw, _ties_reference, (
        Mistake("no_trim", lambda tv, w, d: _ties(tv, w, d, trim=False),
                "trim first: keep only the density fraction of each task vector's entries of largest "
                "magnitude, and zero the rest."),
        Mistake("sum_not_mean", lambda tv, w, d: _ties(tv, w, d, mean=False),
                "the disjoint merge is a mean over the vectors whose sign agrees, not their sum."),
        Mistake("mean_over_all", lambda tv, w, d: _ties(tv, w, d, over_all=True),
                "divide by how many vectors agree with the elected sign in that entry, not by all of them "
                "(an entry only one vector has keeps its full value)."),
        Mistake("sign_by_count", lambda tv, w, d: _ties(tv, w, d, elect="frequency"),
                "elect the sign of the sum of the trimmed entries (their total mass), not the sign that "
                "more vectors have."),
        Mistake("sign_of_weighted", lambda tv, w, d: _ties(tv, w, d, elect="weighted"),
                "elect the sign from the trimmed vectors before they are weighted; the weights apply in the "
                "merge."),
    )),),
    hint="three steps per entry: trim each vector (by magnitude, over all its entries), elect a sign from "
         "the trimmed vectors, then average the weighted entries that agree with it.",
    formula="T̂_i = T_i with all but its int(density·size) largest |entries| zeroed; σ = sign(Σ_i T̂_i) "
            "(+ where 0); merged = Σ_i w_i·T̂_i·[sign(T̂_i) = σ] / max(1, Σ_i [sign(T̂_i) = σ]).",
    points=2, minutes=20, checker="check_ties_merge",
    error_hint="task_vectors is (n, ...): one task vector per row of the first axis; weights has n numbers.")


def check_ties_merge(ties_merge, *, seed=None, hint=False) -> bool:
    """Exercise 23: ``ties_merge(task_vectors, weights, density) -> merged`` (Yadav et al., 2023)."""
    __tracebackhide__ = True
    return check(TIES, [ties_merge], seed, hint)


# ---- 24. DARE ----------------------------------------------------------------------------------------
def _dare_draw(rng, k):
    stack = _stack(rng, k)
    density = [0.5, 0.25, 0.9, 0.1, 0.6, 0.3][k]
    keep = rng.random(stack.shape) < density
    keep.reshape(len(stack), -1)[:, 0] = True          # every vector keeps at least one entry
    return {"task_vectors": stack, "weights": _weights(rng, k, len(stack)), "density": density, "keep": keep}


def _dare_reference(task_vectors, weights, density, keep):
    dropped = [np.where(k, t / density, 0.0) for t, k in zip(task_vectors, keep)]
    return combine_tensors(dropped, weights, "linear")


def _dare(tv, w, d, keep, scale=None, invert=False):
    kept = np.where(~keep if invert else keep, tv, 0.0) * (1 / d if scale is None else scale(d))
    return np.tensordot(np.asarray(w), kept, axes=1)


DARE = Exercise(
    24, "dare_linear", "DARE: drop and rescale", (Part("dare_linear", (Output("merged"),), _dare_draw,
                                                        _dare_reference, (
        Mistake("no_rescale", lambda tv, w, d, k: _dare(tv, w, d, k, scale=lambda d: 1.0),
                "rescale the kept entries by 1/density, so that the expected task vector is unchanged."),
        Mistake("times_density", lambda tv, w, d, k: _dare(tv, w, d, k, scale=lambda d: d),
                "divide the kept entries by density (the keep probability), do not multiply."),
        Mistake("by_drop_rate", lambda tv, w, d, k: _dare(tv, w, d, k, scale=lambda d: 1 / (1 - d)),
                "density is the probability of *keeping* an entry: divide by density, not by 1 − density."),
        Mistake("inverted_mask", lambda tv, w, d, k: _dare(tv, w, d, k, invert=True),
                "keep[i] is True where entry i is kept; you kept the dropped ones."),
        Mistake("unweighted", lambda tv, w, d, k: _dare(tv, np.ones(len(tv)), d, k),
                "after dropping and rescaling, the merge is linear: Σ_i w_i·T̃_i."),
    )),),
    hint="each kept entry is divided by the keep probability, so that E[T̃] = T; then the weighted sum.",
    formula="T̃_i = keep_i · T_i / density; merged = Σ_i w_i·T̃_i.",
    points=1, minutes=10, checker="check_dare_linear",
    error_hint="task_vectors and keep are (n, ...); keep is a bool mask of the same shape.")


def check_dare_linear(dare_linear, *, seed=None, hint=False) -> bool:
    """Exercise 24: ``dare_linear(task_vectors, weights, density, keep) -> merged`` (Yu et al., 2023)."""
    __tracebackhide__ = True
    return check(DARE, [dare_linear], seed, hint)
