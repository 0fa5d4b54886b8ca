"""Solution to exercise 4: layer-norm backward."""
import numpy as np


def layer_norm_backward(x, weight, grad_out, eps):
    """Gradients of y = x̂·weight + bias: x (..., D), weight (D,) -> (dx, dweight, dbias)."""
    centred = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centred ** 2).mean(axis=-1, keepdims=True) + eps)   # (..., 1)
    xhat = centred * rstd
    rows = tuple(range(x.ndim - 1))
    dweight = (grad_out * xhat).sum(axis=rows)
    dbias = grad_out.sum(axis=rows)
    g = grad_out * weight                                   # gradient reaching x̂
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dweight, dbias
