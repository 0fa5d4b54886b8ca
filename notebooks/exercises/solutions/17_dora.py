"""Solution to exercise 17: DoRA's magnitude and direction."""
import numpy as np


def dora_magnitude(W0, A, B, alpha, r):
    """The norm of each output row of W = W0 + (alpha/r) B A: (out,)."""
    W = W0 + (alpha / r) * B @ A
    return np.sqrt((W * W).sum(axis=1))


def dora_forward(x, W0, A, B, alpha, r, magnitude):
    """h = x (m · W/‖W‖_row)ᵀ with W = W0 + (alpha/r) B A: x (..., in) -> (..., out)."""
    W = W0 + (alpha / r) * B @ A
    direction = W / np.sqrt((W * W).sum(axis=1, keepdims=True))     # unit rows
    return x @ (magnitude[:, None] * direction).T
