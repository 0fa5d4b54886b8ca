"""Solution to exercise 7: merging an adapter into the weight, and taking it out again."""


def merge(W0, A, B, alpha, r):
    """W = W0 + (alpha/r) B A: W0 (out, in), A (r, in), B (out, r) -> (out, in)."""
    return W0 + (alpha / r) * (B @ A)


def unmerge(W, A, B, alpha, r):
    """W0 = W - (alpha/r) B A, the inverse of merge."""
    return W - (alpha / r) * (B @ A)
