"""Solution to exercise 6: a LoRALinear forward pass."""


def lora_forward(x, W0, A, B, alpha, r):
    """h = x W0ᵀ + (alpha/r) x Aᵀ Bᵀ: x (..., in), W0 (out, in), A (r, in), B (out, r) -> (..., out)."""
    return x @ W0.T + (alpha / r) * ((x @ A.T) @ B.T)
