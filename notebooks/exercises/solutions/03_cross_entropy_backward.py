"""Solution to exercise 3: softmax + cross-entropy backward."""
import numpy as np


def cross_entropy_backward(logits, targets):
    """Gradient of the mean cross-entropy: logits (N, C), targets (N,) ints -> (N, C)."""
    n, c = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)   # no overflow in exp
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    one_hot = np.eye(c)[targets]
    return (probs - one_hot) / n
