"""A key/value cache for decoding: each layer's keys and values, kept so a new token costs one position.

Without a cache, generating token t+1 recomputes the keys and values of all t earlier tokens.
With one, each attention layer writes the k and v of its new positions at [length, length + T)
of arrays preallocated to ``max_len``, and attends over [0, length + T); the model then calls
``advance(T)``. Positions (GPT's learned ones, Llama's rotary offset) start at ``length``.
The cache is for inference: the stored keys carry no graph, so it is used under ``no_grad``.

>>> import numpy as np
>>> cache = KVCache(n_layers=1, batch_size=2, n_kv_heads=3, max_len=8, head_dim=4)
>>> k = v = np.ones((2, 3, 5, 4), dtype=np.float32)
>>> keys, values = cache.update(0, k, v)
>>> cache.advance(5)
>>> keys.shape, cache.length
((2, 3, 5, 4), 5)
"""
from __future__ import annotations

import numpy as np

from .._validate import check_int
from ..tensor import Tensor, is_grad_enabled

__all__ = ["KVCache"]


class KVCache:
    """Per-layer keys and values (B, n_kv_heads, max_len, head_dim), filled up to ``length``."""

    def __init__(self, n_layers: int, batch_size: int, n_kv_heads: int, max_len: int, head_dim: int,
                 dtype=np.float32, xp=np):
        for name, value in (("n_layers", n_layers), ("batch_size", batch_size), ("n_kv_heads", n_kv_heads),
                            ("max_len", max_len), ("head_dim", head_dim)):
            check_int(name, value, low=1, where="KVCache")
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.keys = [xp.zeros(shape, dtype=dtype) for _ in range(n_layers)]    # each (B, Hkv, max_len, hd)
        self.values = [xp.zeros(shape, dtype=dtype) for _ in range(n_layers)]  # each (B, Hkv, max_len, hd)
        self.max_len, self.length = max_len, 0

    def check_room(self, n_new: int) -> None:
        """ValueError unless ``n_new`` more positions fit; RuntimeError when autograd is recording."""
        if is_grad_enabled():
            raise RuntimeError("a KVCache is for inference: run the forward under tinylora.no_grad()")
        if self.length + n_new > self.max_len:
            raise ValueError(f"KVCache: {n_new} new tokens after {self.length} cached ones exceed "
                             f"its max_len={self.max_len}")

    def update(self, layer: int, k, v):
        """Write layer ``layer``'s new k, v (B, Hkv, T, hd) at [length, length + T); return all so far.

        Returns views (B, Hkv, length + T, hd) of the stored keys and values (arrays, no graph).
        """
        k, v = (t.data if isinstance(t, Tensor) else t for t in (k, v))
        start, end = self.length, self.length + k.shape[2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n_new: int) -> None:
        """Count ``n_new`` positions as cached (the model calls this once all its layers wrote them)."""
        self.length += n_new
