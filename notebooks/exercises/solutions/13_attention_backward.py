"""Solution to exercise 13: scaled-dot-product attention backward."""
import numpy as np


def attention_backward(q, k, v, grad_out, causal):
    """(dq, dk, dv) of out = softmax(q kᵀ/√d, causal mask) v; q, k, v, grad_out (B, H, T, d)."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    scores = q @ k.swapaxes(-1, -2) * scale                        # (B, H, T, T)
    if causal:
        T = q.shape[-2]
        scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)                          # (B, H, T, T)
    dv = p.swapaxes(-1, -2) @ grad_out                             # (B, H, T, d)
    dp = grad_out @ v.swapaxes(-1, -2)                             # (B, H, T, T)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))          # softmax backward
    return ds @ k * scale, ds.swapaxes(-1, -2) @ q * scale, dv
