"""Solution to exercise 21: one attention step with a KV cache."""
import numpy as np


def attention_with_cache(q, k_new, v_new, k_cache, v_cache):
    """q, k_new, v_new (B, H, T, d); caches (B, H, S, d) -> out, keys, values (B, H, S+T, d)."""
    keys = np.concatenate([k_cache, k_new], axis=2)                # positions 0 .. S+T-1
    values = np.concatenate([v_cache, v_new], axis=2)
    T, S = q.shape[2], keys.shape[2]
    scores = q @ keys.swapaxes(-1, -2) / np.sqrt(q.shape[-1])     # (B, H, T, S+T)
    allowed = np.tril(np.ones((T, S), dtype=bool), k=S - T)        # query i is position S - T + i
    scores = np.where(allowed, scores, -np.inf)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) @ values, keys, values
