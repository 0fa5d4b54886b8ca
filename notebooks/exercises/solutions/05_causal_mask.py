"""Solution to exercise 5: the causal mask."""
import numpy as np


def causal_mask(T):
    """(T, T) bool: True where query i may attend to key j, i.e. j <= i."""
    return np.tril(np.ones((T, T), dtype=bool))
