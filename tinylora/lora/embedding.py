"""LoRA on an Embedding, in loralib's convention: A (r, num_embeddings) starts at zero, B (embedding_dim, r)
random, h = W0[ids] + s·(B·A[:, ids])ᵀ.

Shapes. Looking up token i is multiplying the table by the one-hot vector e_i, so an Embedding is a Linear
whose input has in = num_embeddings features and whose output has out = embedding_dim. tinylora names the
shapes that way: A (r, in), B (out, r), ΔW = s·B·A (out, in) = (embedding_dim, num_embeddings), which is
the update of the (num_embeddings, embedding_dim) table, transposed. ``merge`` adds ΔWᵀ to the table.
So every tool that reasons on ΔW = s·B·A (``get_delta_weights``, ``add_weighted_adapter``, the adapter
files) treats an Embedding adapter exactly like a Linear one.

Why A starts at zero here, the other way round from ``LoraLinear``. With A·e_i = A[:, i] (column i of A),
token i's vector is W0[i] + s·B·A[:, i]. Let g_t (out,) be the upstream gradient at position t. Then

    dL/dA[:, i] = s·Bᵀ·Σ_{t: ids_t = i} g_t      (only the columns of tokens that occur)
    dL/dB       = s·Σ_t g_t·A[:, ids_t]ᵀ          (zero while A = 0)

With A = 0 the update starts at zero, as LoRA needs. B is random, so A's gradient is not zero and training
starts; B's first gradient is exactly zero, and B moves only once A has. A token that never occurs keeps
A[:, i] = 0 forever (its column gets no gradient), so its row of the table never changes: the update is as
sparse over the vocabulary as an Embedding's own gradient. With Linear's convention (A random, B = 0)
every row s·B·A[:, i] would change as soon as B trains, for tokens never seen as much as for seen ones.

Dropout is not applied (a lookup has no input features to drop), as in loralib and PEFT.

Tied head (Llama's ``lm_head.weight`` is ``embed_tokens.weight``): as in PEFT, the adapter changes only the
lookup, and the head keeps computing with W0 while the adapter is unmerged. ``merge`` writes W0 + ΔWᵀ
into the one shared table, so the merged model's head changes too and its logits differ from the unmerged
model's; ``unmerge`` restores both. ``check_embedding_targets`` warns about this when such an adapter is
added.

>>> from tinylora.lora import LoraConfig
>>> table = LoraEmbedding(Embedding(10, 4, rng=np.random.default_rng(0)))
>>> table.add_adapter("default", LoraConfig(r=2), np.random.default_rng(0))
>>> table.active_adapter = "default"
>>> bool((table(np.array([[1, 2, 3]])).data == table.base_layer(np.array([[1, 2, 3]])).data).all())
True
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import functional as F
from ..backend import to_device
from ..nn import Embedding, Linear, Module
from ..tensor import Tensor
from .config import LoraConfig
from .layer import LoraAdapter, LoraLinear, _AdapterDict
from .variants import LoraVariant, variant_for


def _initial_factors(config: LoraConfig, out_features: int, in_features: int, rng: np.random.Generator):
    """A (r, in) zero and B (out, r) ~ N(0, 1) on the host in float64 (A random too if init is False)."""
    r = config.r
    B = rng.normal(0.0, 1.0, size=(out_features, r))
    A = rng.normal(0.0, 1.0 / r, size=(r, in_features)) if config.init_lora_weights is False \
        else np.zeros((r, in_features))
    return A, B


class LoraEmbedding(Module):
    """A frozen ``Embedding`` plus adapters; one adapter is active at a time.

    Shapes: W0 (num_embeddings, embedding_dim), A (r, num_embeddings), B (embedding_dim, r),
    ids (...) -> (..., embedding_dim).
    """

    def __init__(self, base_layer: Embedding):
        super().__init__()
        if not isinstance(base_layer, Embedding):
            raise TypeError(f"LoraEmbedding wraps an Embedding, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.adapters = _AdapterDict()
        self.active_adapter: str | None = None
        self.merged_adapter: str | None = None
        self.disabled = False
        base_layer.requires_grad_(False)

    in_features = property(lambda self: self.base_layer.num_embeddings)   # the one-hot input's size
    out_features = property(lambda self: self.base_layer.embedding_dim)
    merged = property(lambda self: self.merged_adapter is not None)
    weight = property(lambda self: self.base_layer.weight)            # models read their table's weight
    num_embeddings = property(lambda self: self.base_layer.num_embeddings)
    embedding_dim = property(lambda self: self.base_layer.embedding_dim)

    def extra_repr(self):
        return f"active={self.active_adapter!r}, merged={self.merged}"

    def add_adapter(self, name: str, config: LoraConfig, rng: np.random.Generator) -> None:
        """Create adapter ``name``: A = 0, B random, drawn on the host, then put on W0's device and dtype."""
        if type(variant_for(config)) is not LoraVariant:
            raise ValueError("LoRA on an Embedding supports plain LoRA and rsLoRA only (not DoRA or PiSSA)")
        weight = self.base_layer.weight
        A, B = (to_device(f.astype(weight.dtype), weight.device)
                for f in _initial_factors(config, self.out_features, self.in_features, rng))
        self.adapters[name] = LoraAdapter(config, A, B, LoraVariant())

    def adapter_in_use(self) -> LoraAdapter | None:
        """The active adapter, or None when disabled, merged (W0 holds the update) or none is active."""
        if self.disabled or self.merged or self.active_adapter is None:
            return None
        return self.adapters[self.active_adapter]

    def forward(self, ids) -> Tensor:
        out = self.base_layer(ids)                                        # (..., D)
        adapter = self.adapter_in_use()
        if adapter is None:
            return out
        return out + self.lora_update(ids, adapter)                       # (..., D)

    def lora_update(self, ids, adapter: LoraAdapter) -> Tensor:
        """s·B·A[:, ids]: the lookup picks columns of A, (...) -> (..., r) -> (..., D)."""
        after_A = F.embedding(ids, adapter.lora_A.transpose())            # (..., r): rows of Aᵀ
        return F.linear(after_A * adapter.scaling, adapter.lora_B)        # (..., D)

    def delta_weight(self, name: str | None = None):
        """ΔW = s·B·A, (embedding_dim, num_embeddings): the table's update, transposed (see the module)."""
        adapter = self.adapters[name or self.active_adapter]
        return (adapter.lora_B.data @ adapter.lora_A.data) * adapter.scaling

    def merge(self) -> None:
        """Table ← W0 + ΔWᵀ for the active adapter (a tied head changes with it). Never implicit."""
        if self.merged:
            raise ValueError(f"this LoraEmbedding is already merged (adapter {self.merged_adapter!r}); "
                             "unmerge first")
        if self.disabled:
            raise ValueError("cannot merge inside disable_adapters(); leave the block first")
        if self.active_adapter is None:
            return
        weight = self.base_layer.weight
        weight.data = weight.data + self.delta_weight().T                # (V, D)
        self.merged_adapter = self.active_adapter

    def unmerge(self) -> None:
        """Undo ``merge``: table ← W − ΔWᵀ."""
        if not self.merged:
            raise ValueError("this LoraEmbedding is not merged")
        weight = self.base_layer.weight
        weight.data = weight.data - self.delta_weight(self.merged_adapter).T   # (V, D)
        self.merged_adapter = None

    def delete_adapter(self, name: str) -> None:
        """Remove adapter ``name``."""
        if self.merged_adapter == name:
            raise ValueError(f"adapter {name!r} is merged; call unmerge_lora(model) first")
        del self.adapters[name]
        if self.active_adapter == name:
            self.active_adapter = None


LORA_LAYER_TYPES = (LoraLinear, LoraEmbedding)


def lora_layer_for(layer: Module) -> LoraLinear | LoraEmbedding:
    """``layer`` itself if it is adapted already, else a new LoraLinear or LoraEmbedding around it."""
    if isinstance(layer, LORA_LAYER_TYPES):
        return layer
    return LoraEmbedding(layer) if isinstance(layer, Embedding) else LoraLinear(layer)


def is_embedding(layer: Module) -> bool:
    """True for an Embedding, adapted or not."""
    return isinstance(layer, (Embedding, LoraEmbedding))


def layer_shape(layer: Module) -> tuple[int, int]:
    """(out, in) of a Linear, or (embedding_dim, num_embeddings) of an Embedding, adapted or not."""
    if isinstance(layer, Embedding):
        return layer.embedding_dim, layer.num_embeddings
    return layer.out_features, layer.in_features


def check_embedding_targets(model: Module, targets: list[str], config: LoraConfig) -> None:
    """Refuse DoRA/PiSSA on an Embedding target; warn when its table is shared (tied) with a Linear head."""
    embeddings = [n for n in targets if is_embedding(model.get_submodule(n))]
    if embeddings and type(variant_for(config)) is not LoraVariant:
        raise ValueError(f"target {embeddings[0]!r} is an Embedding; LoRA on an Embedding supports plain "
                         "LoRA and rsLoRA only: set use_dora=False and init_lora_weights other than 'pissa'")
    for name in embeddings:
        table = model.get_submodule(name)
        weight = (table.base_layer if isinstance(table, LoraEmbedding) else table).weight
        heads = [n for n, m in model.named_modules() if isinstance(m, Linear) and m.weight is weight]
        if heads:
            warnings.warn(f"the table of {name!r} is tied to {heads[0]!r}: unmerged, the adapter changes "
                          f"only the lookup and {heads[0]!r} keeps W0; merging writes W0 + ΔWᵀ into the "
                          f"shared table, so {heads[0]!r} changes too (as in PEFT)", stacklevel=3)
