"""Solution to exercise 14: one AdamW step."""
import numpy as np


def adamw_step(w, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """One AdamW update at step t (1-based): returns the new (w, m, v)."""
    w = w * (1 - lr * weight_decay)                  # decoupled decay, not through the gradient
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1 ** t)                     # bias correction: m and v start at zero
    v_hat = v / (1 - beta2 ** t)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps), m, v
