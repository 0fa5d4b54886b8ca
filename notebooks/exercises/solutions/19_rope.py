"""Solution to exercise 19: rotary position embedding, rotate-half layout."""
import numpy as np


def rope(x, offset, theta):
    """x (B, H, T, hd) -> (B, H, T, hd): channel i turns with i + hd/2 by (offset + t)·theta^(−2i/hd)."""
    T, hd = x.shape[-2:]
    inv_freq = theta ** (-np.arange(0, hd, 2) / hd)                  # (hd/2,)
    angle = (offset + np.arange(T))[:, None] * inv_freq              # (T, hd/2)
    angle = np.concatenate([angle, angle], axis=-1)                   # (T, hd)
    rotated = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], axis=-1)   # rotate_half(x)
    return x * np.cos(angle) + rotated * np.sin(angle)
