"""A GPT in one file: config, attention, MLP, blocks, the model, and generate() (models/generation.py).

Decoder-only, pre-LayerNorm, learned positions. Attention keeps *separate* q/k/v/o
projections so LoRA can adapt W_q and W_v on their own, as the LoRA paper does.
Shapes: B = batch, T = time (tokens), C = n_embd, H = n_head, hd = C // H, V = vocab_size.

>>> import numpy as np
>>> model = GPT(GPTConfig.preset("nano"), seed=0)
>>> logits, loss = model(np.zeros((2, 8), dtype=np.int64), np.zeros((2, 8), dtype=np.int64))
>>> logits.shape
(2, 8, 96)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .. import functional as F
from .._validate import check_bool, check_choice, check_int, check_probability
from ..nn import GELU, Dropout, Embedding, LayerNorm, Linear, Module, ModuleList
from ..tensor import Tensor
from .adapter_rows import adapters_per_row
from .generation import generate
from .kv_cache import KVCache

__all__ = ["GPTConfig", "CausalSelfAttention", "MLP", "Block", "GPT", "PRESETS"]

PRESETS = {
    "nano": dict(n_layer=2, n_head=2, n_embd=32, block_size=32),    # unit tests, gradchecks
    "micro": dict(n_layer=2, n_head=4, n_embd=64, block_size=64),   # quick sweeps and exercises
    "base": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),   # the shipped pretrained model
    "bench": dict(n_layer=4, n_head=4, n_embd=256, block_size=128),  # the benchmark config
}


@dataclass(frozen=True)
class GPTConfig:
    """Model sizes. ``GPTConfig.preset("base")`` gives the shipped model's config."""

    vocab_size: int = 96
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_int(name, getattr(self, name), low=1, where="GPTConfig")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        check_probability("dropout", self.dropout, where="GPTConfig")
        check_bool("bias", self.bias, where="GPTConfig")

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        """A named tiny config: one of ``PRESETS`` ("nano", "micro", "base", "bench")."""
        check_choice("name", name, sorted(PRESETS), where="GPTConfig.preset")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(Module):
    def __init__(self, config: GPTConfig, rng=None):
        super().__init__()
        C, bias = config.n_embd, config.bias
        self.n_head = config.n_head
        self.q_proj = Linear(C, C, bias=bias, rng=rng)
        self.k_proj = Linear(C, C, bias=bias, rng=rng)
        self.v_proj = Linear(C, C, bias=bias, rng=rng)
        self.o_proj = Linear(C, C, bias=bias, rng=rng)
        self.resid_dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        B, T, C = x.shape
        H, hd = self.n_head, C // self.n_head
        q = self.q_proj(x).reshape(B, T, H, hd).transpose(0, 2, 1, 3)  # (B, H, T, hd)
        k = self.k_proj(x).reshape(B, T, H, hd).transpose(0, 2, 1, 3)  # (B, H, T, hd)
        v = self.v_proj(x).reshape(B, T, H, hd).transpose(0, 2, 1, 3)  # (B, H, T, hd)
        if cache is not None:  # attend over the cached positions too: the queries are the last T
            k, v = (Tensor(a) for a in cache.update(layer, k, v))    # (B, H, S, hd), S = length + T
        y = F.scaled_dot_product_attention(q, k, v, causal=True)      # (B, H, T, hd)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)                   # (B, T, C)
        return self.resid_dropout(self.o_proj(y))                      # (B, T, C)


class MLP(Module):
    def __init__(self, config: GPTConfig, rng=None):
        super().__init__()
        C = config.n_embd
        self.fc_in = Linear(C, 4 * C, bias=config.bias, rng=rng)
        self.gelu = GELU()
        self.fc_out = Linear(4 * C, C, bias=config.bias, rng=rng)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.gelu(self.fc_in(x))         # (B, T, 4C)
        return self.dropout(self.fc_out(h))  # (B, T, C)


class Block(Module):
    """Pre-LayerNorm residual block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig, rng=None):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, rng)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config, rng)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))   # (B, T, C)
        return x


class GPT(Module):
    """The language model: ``model(idx, targets=None) -> (logits, loss)``."""

    def __init__(self, config: GPTConfig, seed: int | None = 0):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT(config) needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        rng = np.random.default_rng(seed)
        self.wte = Embedding(config.vocab_size, config.n_embd, rng=rng)
        self.wpe = Embedding(config.block_size, config.n_embd, rng=rng)
        self.drop = Dropout(config.dropout)
        self.blocks = ModuleList([Block(config, rng) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False, rng=rng)
        self._init_weights(rng)

    def _init_weights(self, rng: np.random.Generator) -> None:
        """GPT-2 init: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 n_layer)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                p.data[...] = 0
            elif name.endswith(("o_proj.weight", "fc_out.weight")):
                p.data[...] = rng.normal(0.0, residual_std, size=p.shape)
            elif p.ndim == 2:
                p.data[...] = rng.normal(0.0, 0.02, size=p.shape)

    def _check_ids(self, idx, name: str, check_length: bool = True):
        """Validate token ids (B, T): integers in [0, vocab_size), T <= block_size."""
        data = idx.data if isinstance(idx, Tensor) else idx
        xp = self.wte.weight.xp
        if isinstance(data, (list, tuple)):
            data = xp.asarray(data)
        if not hasattr(data, "dtype") or data.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array of token ids, "
                            f"got {getattr(data, 'dtype', type(data))}")
        if data.ndim != 2:
            raise ValueError(f"{name} must have shape (batch, time), got shape {data.shape}")
        if check_length and data.shape[1] > self.config.block_size:
            raise ValueError(f"{name} has {data.shape[1]} tokens, "
                             f"more than block_size={self.config.block_size}")
        if data.size and (int(data.min()) < 0 or int(data.max()) >= self.config.vocab_size):
            bad = int(data.max()) if int(data.max()) >= self.config.vocab_size else int(data.min())
            raise ValueError(f"{name} holds token id {bad}, outside [0, {self.config.vocab_size})")
        return xp.asarray(data)

    def forward(self, idx, targets=None, cache: KVCache | None = None, adapter_names=None):
        """Logits (B, T, V) and the loss (None without targets). With a ``cache``, ``idx`` holds the
        tokens after the ``cache.length`` cached ones, and their positions start there. ``adapter_names``:
        one adapter name (or None, the base) per row, for this call (models/adapter_rows.py)."""
        idx = self._check_ids(idx, "idx")
        if adapter_names is not None:
            with adapters_per_row(self, adapter_names, idx.shape[0]):
                return self.forward(idx, targets, cache)
        B, T = idx.shape
        xp = self.wte.weight.xp
        start = 0 if cache is None else cache.length
        if cache is not None:
            cache.check_room(T)
        positions = xp.arange(start, start + T)
        x = self.drop(self.wte(idx) + self.wpe(positions))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)                            # (B, T, C)
        if cache is not None:
            cache.advance(T)
        logits = self.lm_head(self.ln_f(x))                  # (B, T, V)
        if targets is None:
            return logits, None
        targets = self._check_ids(targets, "targets")
        if targets.shape != idx.shape:
            raise ValueError(f"targets shape {targets.shape} must equal idx shape {idx.shape}")
        return logits, F.cross_entropy(logits, targets)      # scalar

    @property
    def context_length(self) -> int:
        return self.config.block_size

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for ``batch_size`` rows of up to ``max_len`` (default block_size) tokens."""
        c = self.config
        max_len = c.block_size if max_len is None else max_len
        if max_len > c.block_size:
            raise ValueError(f"new_cache: max_len={max_len} is longer than block_size={c.block_size}")
        w = self.wte.weight
        return KVCache(c.n_layer, batch_size, c.n_head, max_len, c.n_embd // c.n_head, w.dtype, w.xp)

    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None, top_p: float | None = None, use_cache: bool = True,
                 eos_token_id: int | None = None, crop: bool = True):
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T); returns (B, T + max_new_tokens).

        ``temperature=0`` picks the most likely token (greedy); ``top_k`` keeps the k likeliest,
        ``top_p`` the likeliest up to that probability. A GPT crops its context to block_size by
        default (``crop=True``), as it always did; see ``tinylora.models.generation.generate``.
        """
        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        seed=seed, use_cache=use_cache, eos_token_id=eos_token_id, crop=crop)
