"""Solution to exercise 18: RMSNorm backward."""
import numpy as np


def rms_norm_backward(x, weight, grad_out, eps):
    """Gradients of y = x·rstd·weight, rstd = 1/√(mean(x²) + ε): x (..., D), weight (D,) -> (dx, dweight)."""
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)   # (..., 1)
    xhat = x * rstd
    dweight = (grad_out * xhat).sum(axis=tuple(range(x.ndim - 1)))
    g = grad_out * weight                                               # gradient reaching x̂
    dx = rstd * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dweight
