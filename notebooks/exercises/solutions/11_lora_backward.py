"""Solution to exercise 11: the LoRA backward."""


def lora_backward(x, A, B, alpha, r, grad_out):
    """(dA, dB) of h = x W0ᵀ + (alpha/r) x Aᵀ Bᵀ: x (..., in), A (r, in), B (out, r), grad_out (..., out)."""
    s = alpha / r
    X = x.reshape(-1, x.shape[-1])                 # (N, in): every row uses the same A and B
    G = grad_out.reshape(-1, grad_out.shape[-1])   # (N, out)
    dB = s * G.T @ (X @ A.T)                       # (out, r)
    dA = s * (G @ B).T @ X                         # (r, in): zero when B = 0
    return dA, dB
