"""Solution to exercise 2: the backward of a matrix product."""


def matmul_backward(a, b, grad_out):
    """Gradients of out = a @ b: a (m, k), b (k, n), grad_out (m, n)."""
    grad_a = grad_out @ b.T     # (m, n) @ (n, k) -> (m, k)
    grad_b = a.T @ grad_out     # (k, m) @ (m, n) -> (k, n)
    return grad_a, grad_b
