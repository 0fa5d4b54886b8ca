"""The LoRA layer: a frozen Linear plus adapters, h = W0·x + b + s·B·(A·x).

``base_layer`` is the frozen Linear, ``W0`` its weight (out, in); an adapter holds A (r, in) and B (out, r).
B starts at zero, so a fresh adapter changes nothing; A random, so B's first gradient is not zero.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..backend import to_device
from ..nn import Dropout, Linear, Module, Parameter
from ..quant_ops import lora_linear_4bit
from ..tensor import Tensor
from .config import LoraConfig
from .mixed import mixed_forward
from .variants import LoraVariant, variant_for


class LoraAdapter(Module):
    """One adapter on one layer: A (r, in), B (out, r), a dropout, and its variant (LoRA, DoRA, PiSSA)."""

    def __init__(self, config: LoraConfig, A, B, variant: LoraVariant):
        super().__init__()
        self.config, self.scaling, self.variant = config, config.scaling, variant
        self.lora_A = Parameter(A)                                    # (r, in)
        self.lora_B = Parameter(B)                                    # (out, r)
        self.lora_magnitude = None                                    # DoRA's m (out,), set by its variant
        self.dropout = Dropout(config.lora_dropout, seed=config.seed)

    def extra_repr(self):
        r, in_f = self.lora_A.shape
        dora = self.lora_magnitude is not None
        return f"r={r}, in={in_f}, out={self.lora_B.shape[0]}, scaling={self.scaling:g}, dora={dora}"


class _AdapterDict(Module):
    """Adapters by name, ``layer.adapters["default"]``; sub-modules, so .to() and .eval() reach them."""

    def __getitem__(self, name):
        return self._modules[name]

    def __setitem__(self, name, adapter):
        self._modules[name] = adapter

    def __delitem__(self, name):
        del self._modules[name]

    def __contains__(self, name):
        return name in self._modules

    def __iter__(self):
        return iter(self._modules)

    def values(self):
        return self._modules.values()


def _initial_factors(config: LoraConfig, out_features: int, in_features: int, rng: np.random.Generator):
    """A (r, in) random and B (out, r) zero, drawn on the host in float64 (B random too if init is False)."""
    r = config.r
    if config.init_lora_weights in ("kaiming", True):
        bound = 1 / math.sqrt(in_features)
        A = rng.uniform(-bound, bound, size=(r, in_features))
    else:
        A = rng.normal(0.0, 1.0 / r, size=(r, in_features))
    random_B = config.init_lora_weights is False
    B = rng.normal(0.0, 1.0 / r, size=(out_features, r)) if random_B else np.zeros((out_features, r))
    return A, B


class LoraLinear(Module):
    """A frozen ``Linear`` plus one or more adapters; one adapter is active at a time.

    Shapes (paper notation): W0 (out, in), A (r, in), B (out, r), x (..., in) -> (..., out).

    >>> layer = LoraLinear(Linear(4, 3, rng=np.random.default_rng(0)))
    >>> layer.add_adapter("default", LoraConfig(r=2, lora_alpha=4), np.random.default_rng(0))
    >>> layer.active_adapter = "default"
    >>> x = np.ones((5, 4), dtype=np.float32)
    >>> bool((layer(x).data == layer.base_layer(x).data).all())   # B = 0: nothing changes yet
    True
    """

    def __init__(self, base_layer: Linear):
        super().__init__()
        if not isinstance(base_layer, Linear):
            raise TypeError(f"LoraLinear wraps a Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.adapters = _AdapterDict()
        self.active_adapter, self.merged_adapter = None, None           # adapter names (str) or None
        self.disabled = False
        base_layer.requires_grad_(False)

    row_adapters = None  # a mixed batch: one adapter name (or None) per row, for one call (mixed.py)
    in_features = property(lambda self: self.base_layer.in_features)
    out_features = property(lambda self: self.base_layer.out_features)
    merged = property(lambda self: self.merged_adapter is not None)

    def extra_repr(self):
        return f"active={self.active_adapter!r}, merged={self.merged}"

    def add_adapter(self, name: str, config: LoraConfig, rng: np.random.Generator) -> None:
        """Create adapter ``name``: A, B drawn on the host, then put on W0's device with W0's dtype."""
        weight = self.base_layer.weight
        A, B = (to_device(f.astype(weight.dtype), weight.device)
                for f in _initial_factors(config, self.out_features, self.in_features, rng))
        adapter = LoraAdapter(config, A, B, variant_for(config))
        adapter.variant.init(self, adapter)                    # PiSSA: SVD factors; DoRA: the magnitude
        self.adapters[name] = adapter

    # ---- the math -------------------------------------------------------------------------------
    def forward(self, x) -> Tensor:
        if self.row_adapters is not None:
            return mixed_forward(self, x)
        adapter = self.adapter_in_use()                       # plain LoRA and PiSSA: self.lora_forward
        return self.base_forward(x) if adapter is None else adapter.variant.forward(self, adapter, x)

    def adapter_in_use(self) -> LoraAdapter | None:
        """The active adapter, or None when disabled, merged (W0 holds the update) or none is active."""
        if self.disabled or self.merged or self.active_adapter is None:
            return None
        return self.adapters[self.active_adapter]

    def lora_forward(self, x, adapter: LoraAdapter) -> Tensor:
        """Plain LoRA's h: the fused op whenever dropout is off (lora_dropout = 0, or eval mode), else the
        formula step by step (the mask applies to the LoRA path's x only, so no one product serves both)."""
        if adapter.dropout.p > 0 and self.training:
            return self.plain_forward(x, adapter)
        return self.fused_forward(x, adapter)

    def plain_forward(self, x, adapter: LoraAdapter) -> Tensor:
        """h = W0·x + b + s·B·(A·dropout(x)), the paper's formula, one op at a time."""
        return self.base_layer(x) + self.lora_update(x, adapter)                 # (..., out)

    def lora_update(self, x, adapter: LoraAdapter) -> Tensor:
        """s·B·(A·dropout(x)), (..., in) -> (..., out); s scales the thin (..., r) tensor: r/out the work."""
        Ax = F.linear(adapter.dropout(x), adapter.lora_A)                        # (..., r)
        return F.linear(Ax * adapter.scaling, adapter.lora_B)                    # (..., out)

    def fused_forward(self, x, adapter: LoraAdapter) -> Tensor:
        """The same h as ``plain_forward`` (to rounding) in one op, F.lora_linear: W = W0 + s·B·A formed on
        the fly (out·r·in multiply-adds), then one GEMM forward and one for x's gradient, as in a Linear (the
        formula step by step makes three). A 4-bit W0 (qlora.py): lora_linear_4bit, W a chunk at a time."""
        base = self.base_layer
        op = F.lora_linear if isinstance(base.weight, Tensor) else lora_linear_4bit  # else a BlockWeight
        return op(x, base.weight, base.bias, adapter.lora_A, adapter.lora_B, adapter.scaling)

    def base_forward(self, x) -> Tensor:
        """W0·x + b, the layer without its update (PiSSA's variant adds back what it moved out of W0)."""
        out = self.base_layer(x)                                                 # (..., out)
        if self.merged:
            return out
        for adapter in self.adapters.values():
            out = adapter.variant.base_forward(self, adapter, x, out)
        return out

    def delta_weight(self, name: str | None = None):
        """ΔW, what the adapter adds to W0 (out, in): s·B·A (DoRA: W_merged − W0; PiSSA: s·(B·A − B0·A0))."""
        adapter = self.adapters[name or self.active_adapter]
        delta = (adapter.lora_B.data @ adapter.lora_A.data) * adapter.scaling     # (out, in)
        return adapter.variant.delta_weight(self, adapter, delta)

    # ---- merge / unmerge ------------------------------------------------------------------------
    def merge(self) -> None:
        """W0 ← W0 + s·B·A for the active adapter (DoRA: rows then rescaled to m). Never implicit."""
        if self.merged:
            raise ValueError(f"this LoraLinear is already merged (adapter {self.merged_adapter!r}); "
                             "unmerge first")
        if self.disabled:
            raise ValueError("cannot merge inside disable_adapters(); leave the block first")
        if self.active_adapter is None:
            return
        adapter = self.adapters[self.active_adapter]
        W = self.base_layer.weight.data + (adapter.lora_B.data @ adapter.lora_A.data) * adapter.scaling
        self.base_layer.weight.data = adapter.variant.merge(self, adapter, W)    # (out, in)
        self.merged_adapter = self.active_adapter

    def unmerge(self) -> None:
        """Undo ``merge``: W0 ← W − s·B·A (DoRA: first undo the row rescaling)."""
        if not self.merged:
            raise ValueError("this LoraLinear is not merged")
        adapter = self.adapters[self.merged_adapter]
        W = adapter.variant.unmerge(self, adapter, self.base_layer.weight.data)   # (out, in)
        self.base_layer.weight.data = W - (adapter.lora_B.data @ adapter.lora_A.data) * adapter.scaling
        self.merged_adapter = None

    def delete_adapter(self, name: str) -> None:
        """Remove adapter ``name`` (PiSSA: the frozen weight gets W0 back)."""
        if self.merged_adapter == name:
            raise ValueError(f"adapter {name!r} is merged; call unmerge_lora(model) first")
        adapter = self.adapters[name]
        adapter.variant.delete(self, adapter)
        del self.adapters[name]
        self.active_adapter = None if self.active_adapter == name else self.active_adapter


LoRALinear = LoraLinear  # the name before PEFT's casing; kept so existing code keeps working
