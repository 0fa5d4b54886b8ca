"""A Llama in one file: config, attention, MLP, decoder layers, the model, and generate().

Pre-RMSNorm, rotary positions (Hugging Face's rotate-half), grouped-query attention, a SwiGLU
MLP and (by default) an lm_head tied to the token embedding. Parameter names are exactly those of
``transformers.LlamaForCausalLM``, so its checkpoints load with no table of renames.
Shapes: B = batch, T = time, C = hidden_size, H = query heads, Hkv = key/value heads,
G = H // Hkv (query heads per kv head), hd = head_dim, I = intermediate_size, V = vocab_size.

>>> import numpy as np
>>> model = Llama(LlamaConfig.preset("tiny"), seed=0)
>>> logits, loss = model(np.zeros((2, 8), dtype=np.int64), np.zeros((2, 8), dtype=np.int64))
>>> logits.shape
(2, 8, 128)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .. import functional as F
from .._validate import check_bool, check_choice, check_int, check_real
from ..nn import Embedding, Linear, Module, ModuleList, Parameter, init_enabled
from ..tensor import Tensor
from .adapter_rows import adapters_per_row
from .generation import generate
from .kv_cache import KVCache

__all__ = ["LlamaConfig", "LlamaAttention", "LlamaMLP", "LlamaDecoderLayer", "LlamaModel", "Llama",
           "LLAMA_PRESETS"]

LLAMA_PRESETS = {
    "tiny": dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                 rope_theta=10000.0),  # unit tests
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5),
}
# Hugging Face config.json keys that describe something this Llama does not do, with the value it needs.
_UNSUPPORTED = {"rope_scaling": None, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
                "pretraining_tp": 1, "attention_dropout": 0.0}


@dataclass(frozen=True)
class LlamaConfig:
    """Model sizes, with Hugging Face's field names. ``LlamaConfig.preset("smollm2-135m")``."""

    vocab_size: int = 128
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            check_int(name, getattr(self, name), low=1, where="LlamaConfig")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(f"LlamaConfig.hidden_size ({self.hidden_size}) must be divisible by "
                                 f"num_attention_heads ({self.num_attention_heads}) unless head_dim is given")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        check_int("head_dim", self.head_dim, low=2, where="LlamaConfig")
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig.head_dim ({self.head_dim}) must be even: rope rotates pairs")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"LlamaConfig.num_attention_heads ({self.num_attention_heads}) must be "
                             f"divisible by num_key_value_heads ({self.num_key_value_heads})")
        check_real("rms_norm_eps", self.rms_norm_eps, low=0.0, where="LlamaConfig")
        check_real("rope_theta", self.rope_theta, low=0.0, low_inclusive=False, where="LlamaConfig")
        check_bool("tie_word_embeddings", self.tie_word_embeddings, where="LlamaConfig")

    @classmethod
    def preset(cls, name: str, **overrides) -> "LlamaConfig":
        """A named config: one of ``LLAMA_PRESETS`` ("tiny", "smollm2-135m")."""
        check_choice("name", name, sorted(LLAMA_PRESETS), where="LlamaConfig.preset")
        return cls(**{**LLAMA_PRESETS[name], **overrides})

    @classmethod
    def from_hf_dict(cls, d: dict) -> "LlamaConfig":
        """The config of a Hugging Face ``config.json`` dict; unrelated keys are ignored, and a
        feature this Llama lacks (rope scaling, biases, another activation) is refused by name."""
        if not isinstance(d, dict):
            raise TypeError(f"LlamaConfig.from_hf_dict needs a dict, got {type(d).__name__}")
        if d.get("model_type", "llama") != "llama":
            raise ValueError(f"LlamaConfig.from_hf_dict: model_type must be 'llama', got {d['model_type']!r}")
        rope = dict(d.get("rope_parameters") or {})  # transformers 5 keeps rope_theta in here
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"LlamaConfig.from_hf_dict: rope_type {rope['rope_type']!r} is not supported "
                             "(only the default rotary embedding)")
        bad = {k: d[k] for k, ok in _UNSUPPORTED.items() if d.get(k) is not None and d[k] != ok}
        if bad:
            needs = {k: _UNSUPPORTED[k] for k in bad}
            raise ValueError(f"LlamaConfig.from_hf_dict: unsupported features {bad}; "
                             f"this Llama needs {needs}")
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "rope_theta" in rope:
            fields.setdefault("rope_theta", rope["rope_theta"])
        fields.setdefault("num_key_value_heads", d.get("num_attention_heads", cls.num_key_value_heads))
        fields.setdefault("rms_norm_eps", 1e-6)  # transformers' defaults where the file says nothing
        fields.setdefault("tie_word_embeddings", False)
        return cls(**fields)

    def to_dict(self) -> dict:
        return asdict(self)


class LlamaAttention(Module):
    """Grouped-query causal attention: each group of G query heads shares one key/value head."""

    def __init__(self, config: LlamaConfig, rng=None):
        super().__init__()
        C, hd = config.hidden_size, config.head_dim
        self.n_head, self.n_kv_head = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = hd
        self.rope_theta = config.rope_theta
        self.q_proj = Linear(C, self.n_head * hd, bias=False, rng=rng)
        self.k_proj = Linear(C, self.n_kv_head * hd, bias=False, rng=rng)
        self.v_proj = Linear(C, self.n_kv_head * hd, bias=False, rng=rng)
        self.o_proj = Linear(self.n_head * hd, C, bias=False, rng=rng)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        B, T, _ = x.shape
        H, Hkv, hd = self.n_head, self.n_kv_head, self.head_dim
        start = 0 if cache is None else cache.length
        q = self.q_proj(x).reshape(B, T, H, hd).transpose(0, 2, 1, 3)      # (B, H, T, hd)
        k = self.k_proj(x).reshape(B, T, Hkv, hd).transpose(0, 2, 1, 3)    # (B, Hkv, T, hd)
        v = self.v_proj(x).reshape(B, T, Hkv, hd).transpose(0, 2, 1, 3)    # (B, Hkv, T, hd)
        q = F.rope(q, offset=start, theta=self.rope_theta)                 # (B, H, T, hd)
        k = F.rope(k, offset=start, theta=self.rope_theta)                 # (B, Hkv, T, hd)
        if cache is not None:  # attend over the cached positions too: the queries are the last T
            k, v = (Tensor(a) for a in cache.update(layer, k, v))        # (B, Hkv, S, hd)
        S = k.shape[2]
        # Grouped, not repeated: query head h = j * G + g uses kv head j (HF's repeat_kv order).
        # A size-1 group axis on k and v broadcasts over the G query heads with no copy, and
        # attention's backward sums the G gradients back onto the shared head (unbroadcast).
        q = q.reshape(B, Hkv, H // Hkv, T, hd)                             # (B, Hkv, G, T, hd)
        k, v = k.reshape(B, Hkv, 1, S, hd), v.reshape(B, Hkv, 1, S, hd)    # (B, Hkv, 1, S, hd)
        y = F.scaled_dot_product_attention(q, k, v, causal=True)          # (B, Hkv, G, T, hd)
        y = y.reshape(B, H, T, hd).transpose(0, 2, 1, 3).reshape(B, T, H * hd)  # (B, T, H*hd)
        return self.o_proj(y)                                              # (B, T, C)


class LlamaMLP(Module):
    """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, config: LlamaConfig, rng=None):
        super().__init__()
        C, I = config.hidden_size, config.intermediate_size  # noqa: E741
        self.gate_proj = Linear(C, I, bias=False, rng=rng)
        self.up_proj = Linear(C, I, bias=False, rng=rng)
        self.down_proj = Linear(I, C, bias=False, rng=rng)

    def forward(self, x: Tensor) -> Tensor:
        h = F.swiglu(self.gate_proj(x), self.up_proj(x))  # (B, T, I)
        return self.down_proj(h)                          # (B, T, C)


class RMSNorm(Module):
    """``x / sqrt(mean(x^2) + eps) * weight``; weight starts at ones."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(dim, dtype=np.float32))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.weight, eps=self.eps)  # (..., dim)


class LlamaDecoderLayer(Module):
    """Pre-norm residual block: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: LlamaConfig, rng=None):
        super().__init__()
        self.self_attn = LlamaAttention(config, rng)
        self.mlp = LlamaMLP(config, rng)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cache, layer)  # (B, T, C)
        x = x + self.mlp(self.post_attention_layernorm(x))            # (B, T, C)
        return x


class LlamaModel(Module):
    """The decoder without its head: ``model.embed_tokens``, ``model.layers``, ``model.norm``."""

    def __init__(self, config: LlamaConfig, rng=None):
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, rng=rng)
        self.layers = ModuleList([LlamaDecoderLayer(config, rng) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, ids, cache: KVCache | None = None) -> Tensor:
        x = self.embed_tokens(ids)              # (B, T, C)
        for i, layer in enumerate(self.layers):
            x = layer(x, cache, i)              # (B, T, C)
        return self.norm(x)                     # (B, T, C)


class Llama(Module):
    """``LlamaForCausalLM``: ``model(ids, targets=None, cache=None) -> (logits, loss)``."""

    def __init__(self, config: LlamaConfig, seed: int | None = None):
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"Llama(config) needs a LlamaConfig, got {type(config).__name__}")
        self.config = config
        rng = np.random.default_rng(seed)
        self.model = LlamaModel(config, rng)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False, rng=rng)
        if config.tie_word_embeddings:  # one Parameter, listed once: as model.embed_tokens.weight
            self.lm_head.weight = self.model.embed_tokens.weight
        for _, p in self.named_parameters():  # HF's init: N(0, 0.02) matrices, norms at one
            if p.ndim == 2 and init_enabled():
                p.data[...] = rng.normal(0.0, 0.02, size=p.shape)

    @property
    def context_length(self) -> int:
        return self.config.max_position_embeddings

    def _check_ids(self, ids, name: str, start: int = 0):
        """Integer token ids (B, T) on the model's device, in [0, vocab_size), positions in the context."""
        data = ids.data if isinstance(ids, Tensor) else ids
        xp, V = self.model.embed_tokens.weight.xp, self.config.vocab_size
        data = xp.asarray(data) if isinstance(data, (list, tuple)) else data
        if not hasattr(data, "dtype") or data.dtype.kind not in "iu" or data.ndim != 2:
            kind, shape = getattr(data, "dtype", type(data)), getattr(data, "shape", None)
            raise TypeError(f"{name} must be an integer array of token ids of shape (batch, time), "
                            f"got {kind} of shape {shape}")
        if start + data.shape[1] > self.context_length:
            raise ValueError(f"{name} has {data.shape[1]} tokens after {start} cached, more than "
                             f"max_position_embeddings={self.context_length}")
        if data.size and (int(data.min()) < 0 or int(data.max()) >= V):
            bad = int(data.max()) if int(data.max()) >= V else int(data.min())
            raise ValueError(f"{name} holds token id {bad}, outside [0, {V})")
        return xp.asarray(data)

    def forward(self, ids, targets=None, cache: KVCache | None = None, adapter_names=None):
        """Logits (B, T, V) and the loss (None without targets). With a ``cache``, ``ids`` are the
        tokens after the ``cache.length`` cached ones, and their rotary positions start there.
        ``adapter_names``: one adapter name (or None, the base) per row (models/adapter_rows.py)."""
        ids = self._check_ids(ids, "ids", 0 if cache is None else cache.length)
        if adapter_names is not None:
            with adapters_per_row(self, adapter_names, ids.shape[0]):
                return self.forward(ids, targets, cache)
        if cache is not None:
            cache.check_room(ids.shape[1])
        logits = self.lm_head(self.model(ids, cache))  # (B, T, V)
        if cache is not None:
            cache.advance(ids.shape[1])
        if targets is None:
            return logits, None
        targets = self._check_ids(targets, "targets")
        if targets.shape != ids.shape:
            raise ValueError(f"targets shape {targets.shape} must equal ids shape {ids.shape}")
        return logits, F.cross_entropy(logits, targets)  # scalar

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for ``batch_size`` rows of up to ``max_len`` (default: the context) tokens."""
        c = self.config
        max_len = c.max_position_embeddings if max_len is None else max_len
        if max_len > c.max_position_embeddings:
            raise ValueError(f"new_cache: max_len={max_len} is longer than "
                             f"max_position_embeddings={c.max_position_embeddings}")
        w = self.model.embed_tokens.weight
        return KVCache(c.num_hidden_layers, batch_size, c.num_key_value_heads, max_len, c.head_dim,
                       w.dtype, w.xp)

    def generate(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None, top_p: float | None = None, use_cache: bool = True,
                 eos_token_id: int | None = None, crop: bool = False):
        """Append up to ``max_new_tokens`` tokens to ``ids`` (B, T); see ``models.generation.generate``."""
        return generate(self, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        seed=seed, use_cache=use_cache, eos_token_id=eos_token_id, crop=crop)
