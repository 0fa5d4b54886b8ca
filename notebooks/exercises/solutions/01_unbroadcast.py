"""Solution to exercise 1: the backward of a broadcasting add."""


def unbroadcast(grad, shape):
    """Sum ``grad`` back down to ``shape``, undoing NumPy broadcasting."""
    lead = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(lead)))               # axes broadcasting added on the left
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True).reshape(shape)
