"""Solution to exercise 23: TIES merging (trim, elect sign, disjoint mean)."""
import numpy as np


def ties_merge(task_vectors, weights, density):
    """Trim each vector to its largest |entries|, elect a sign per entry, average the agreeing entries."""
    stack = np.asarray(task_vectors, dtype=float)                   # (n, ...)
    trimmed = np.zeros_like(stack)
    for i, t in enumerate(stack):
        k = int(density * t.size)
        keep = np.argsort(-np.abs(t), axis=None, kind="stable")[:k]
        trimmed[i].flat[keep] = t.flat[keep]
    elected = np.where(trimmed.sum(axis=0) >= 0, 1.0, -1.0)
    agree = np.sign(trimmed) == elected                             # (n, ...)
    weighted = trimmed * np.reshape(weights, (-1,) + (1,) * (stack.ndim - 1))
    return (weighted * agree).sum(axis=0) / np.maximum(agree.sum(axis=0), 1)
