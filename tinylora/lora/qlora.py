"""QLoRA's frozen base (Dettmers et al., 2023, arXiv:2305.14314): every frozen weight in 4-bit NF4 (or in
GGUF's Q4_1 blocks), the adapters in float32.

``quantize_base(model)`` swaps each Linear (adapted or not: the Linear inside a LoraLinear too) for a
``Linear4bit`` and, by default, each Embedding for an ``Embedding4bit``, whose weight is an ``NF4Weight``
(tinylora/nf4.py): 4.5 bits a weight instead of 32. A LoRA layer on a 4-bit base computes with
``lora_linear_4bit`` (tinylora/quant_ops.py), which decodes W0 a chunk of rows at a time, forward and
backward, and never holds a float32 copy of it. The embedding is included because a tied lm_head shares
its table, and because on SmolLM2-135M it is 21% of the weights: left in float32, the frozen base would
be 0.32x its float32 size instead of 0.14x. Biases and norms stay float32 (they are tiny).

``method="q4_1"`` holds each Linear in GGUF's Q4_1 blocks instead (tinylora/gguf_blocks.py: 32 values, a
float16 scale and minimum, 5 bits a weight) and each Embedding in Q8_0 (8.5 bits), as llama.cpp's Q4_1
files store them. On a model read from such a file it gives back the file's own blocks, byte for byte, so
the 4-bit base computes with exactly the float32 base's values: 0.18x the bytes at no cost in quality.
NF4 instead rounds those values onto its own 16 levels (+14.8% held-out loss on SmolLM2-135M, docs/qlora.md).

Rules: quantize before building the optimizer, and after ``model.to(device)`` (a 4-bit weight is not a
Parameter: ``to()`` another device refuses it, and the optimizer never sees it). Adapters added after
quantizing work as before. Merging into a 4-bit base raises: W0 + ΔW rounded back to 16 levels would lose most
of a small ΔW, so ``dequantize_base(model)`` first gives float32 weights (the 4-bit values, exactly), which
merge as usual. DoRA and PiSSA read or rewrite W0's float32 values, so they are refused on a 4-bit base.

>>> from tinylora.models import GPT, GPTConfig
>>> from tinylora.lora import LoraConfig, apply_lora
>>> model = quantize_base(GPT(GPTConfig.preset("nano")), block_size=32)
>>> model = apply_lora(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
>>> type(model.blocks[0].attn.q_proj.base_layer).__name__, model.blocks[0].attn.k_proj.weight.block_size
('Linear4bit', 32)
"""
from __future__ import annotations

from .._validate import check_bool, check_choice
from ..block_weight import BlockWeight
from ..gguf_blocks import GGUF_BLOCK, quantize_q4_1, quantize_q8_0
from ..module import Parameter
from ..nf4 import check_block_size, quantize_nf4
from ..nn import Embedding, Linear, Module, no_init
from ..quant_ops import linear_4bit
from ..tensor import Tensor
from .layer import LoraLinear

__all__ = ["Linear4bit", "Embedding4bit", "quantize_base", "dequantize_base", "is_quantized", "METHODS"]

METHODS = ("nf4", "q4_1")
DEFAULT_BLOCK_SIZE = {"nf4": 64, "q4_1": GGUF_BLOCK}


class Linear4bit(Linear):
    """A frozen ``Linear`` whose weight is a ``BlockWeight`` (out, in: NF4 or Q4_1); the bias (out,) stays
    float32.

    Forward is ``linear_4bit``: x (..., in) -> (..., out), a chunk of W's rows decoded at a time.
    """

    def __init__(self, weight: BlockWeight, bias: Parameter | None = None):
        Module.__init__(self)                      # not Linear.__init__: there is nothing to draw
        self.out_features, self.in_features = weight.shape
        self.weight, self.bias = weight, bias

    def forward(self, x):
        return linear_4bit(x, self.weight, self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", {self.weight.method} block_size={self.weight.block_size}"


class Embedding4bit(Embedding):
    """A frozen ``Embedding`` whose table (num_embeddings, dim) is a ``BlockWeight`` (NF4, or Q8_0 with
    ``method="q4_1"``): ids (...) -> (..., dim), only the looked-up rows decoded."""

    def __init__(self, weight: BlockWeight):
        Module.__init__(self)
        self.num_embeddings, self.embedding_dim = weight.shape
        self.weight = weight

    def forward(self, ids):
        ids = ids.data if isinstance(ids, Tensor) else ids
        return Tensor(self.weight.lookup(ids))     # (..., dim), no gradient: the table is frozen

    def extra_repr(self):
        return super().extra_repr() + f", {self.weight.method} block_size={self.weight.block_size}"


def is_quantized(model: Module) -> bool:
    """True when some layer of ``model`` holds a block-quantized weight (``quantize_base``)."""
    return any(isinstance(m, (Linear4bit, Embedding4bit)) for m in model.modules())


def _frozen_layers(model: Module, embeddings: bool) -> list[tuple[str, Module]]:
    """(name, layer) of each Linear and (if ``embeddings``) Embedding to quantize; a Linear that shares its
    weight with an Embedding (a tied lm_head) goes with the embedding."""
    tables = {id(m.weight) for _, m in model.named_modules() if isinstance(m, Embedding)}
    found = []
    for name, m in model.named_modules():
        if isinstance(m, Embedding) and embeddings:
            found.append((name, m))
        elif isinstance(m, Linear) and (embeddings or id(m.weight) not in tables):
            found.append((name, m))
    return found


def _check_can_quantize(model: Module, method, block_size, layers) -> None:
    check_choice("method", method, METHODS, where="quantize_base")
    if method == "q4_1" and block_size != GGUF_BLOCK:
        raise ValueError(f"quantize_base: method='q4_1' uses GGUF's blocks of {GGUF_BLOCK} values, got "
                         f"block_size={block_size!r}; leave block_size out (or pass {GGUF_BLOCK})")
    if is_quantized(model):
        raise ValueError("quantize_base: this model is already quantized (it has Linear4bit/Embedding4bit "
                         "layers); quantize a float model once, or call dequantize_base(model) first")
    for name, m in model.named_modules():
        if isinstance(m, LoraLinear) and m.merged:
            raise ValueError(f"quantize_base: layer {name!r} has adapter {m.merged_adapter!r} merged into "
                             "its weight; call unmerge_lora(model) first, so the 4-bit base is the base")
        for adapter_name in (m.adapters if isinstance(m, LoraLinear) else ()):
            adapter = m.adapters[adapter_name]
            if adapter.variant.name != "LoRA":
                raise ValueError(f"quantize_base: layer {name!r} has a {adapter.variant.name} adapter "
                                 f"({adapter_name!r}), which needs W0 in float32; only LoRA and rsLoRA "
                                 "adapters work on a 4-bit base")
    if not layers:
        raise ValueError(f"quantize_base: {type(model).__name__} has no Linear or Embedding to quantize")
    for name, m in layers:
        where = f"quantize_base (layer {name!r}, weight {m.weight.shape[0]}x{m.weight.shape[1]})"
        if method == "nf4":
            check_block_size(block_size, m.weight.shape[1], where)
        elif m.weight.shape[1] % GGUF_BLOCK:
            raise ValueError(f"{where}: method='q4_1' needs in_features to be a multiple of {GGUF_BLOCK}, "
                             f"got {m.weight.shape[1]}; use method='nf4' with a block_size that divides it")


def quantize_base(model: Module, method: str = "nf4", block_size: int | None = None,
                  embeddings: bool = True) -> Module:
    """Hold every frozen Linear weight (and, if ``embeddings``, every Embedding table) of ``model`` in 4-bit
    blocks; in place, returns ``model``.

    ``method="nf4"``: NF4 with one float32 absmax per ``block_size`` values of a row (default 64).
    ``method="q4_1"``: GGUF's Q4_1 blocks of 32 for the Linears and Q8_0 for the Embeddings; on a model read
    from a Q4_1 GGUF file these are the file's own blocks, so no value changes.

    Everything is checked before anything changes: ``method`` must be one of ``METHODS``, ``block_size``
    even and a divisor of every quantized layer's in-features (q4_1: 32, and in-features a multiple of it),
    the model not already quantized, no adapter merged, and adapters (if any) plain LoRA or rsLoRA. A
    shared weight (a tied lm_head) is quantized once.
    """
    check_bool("embeddings", embeddings, where="quantize_base")
    check_choice("method", method, METHODS, where="quantize_base")
    block_size = DEFAULT_BLOCK_SIZE[method] if block_size is None else block_size
    layers = _frozen_layers(model, embeddings)
    _check_can_quantize(model, method, block_size, layers)
    tables = {id(m.weight) for _, m in layers if isinstance(m, Embedding)}  # q4_1 keeps these in Q8_0
    done: dict[int, BlockWeight] = {}               # id(float weight) -> its 4-bit weight, for tied tables
    for name, m in layers:
        key = id(m.weight)
        if key not in done:
            if method == "nf4":
                done[key] = quantize_nf4(m.weight.data, block_size)
            else:
                done[key] = (quantize_q8_0 if key in tables else quantize_q4_1)(m.weight.data)
        new = Embedding4bit(done[key]) if isinstance(m, Embedding) else Linear4bit(done[key], m.bias)
        new.training = m.training
        model.set_submodule(name, new)
    return model


def dequantize_base(model: Module) -> Module:
    """Undo ``quantize_base``: each 4-bit layer becomes a float32 Linear/Embedding holding the 4-bit values
    (the rounding stays), frozen; a tied table stays one Parameter. Then adapters can merge. Returns model.
    """
    done: dict[int, Parameter] = {}
    for name, m in [(n, m) for n, m in model.named_modules() if isinstance(m, (Linear4bit, Embedding4bit))]:
        key = id(m.weight)
        if key not in done:
            done[key] = Parameter(m.weight.dequantize(), requires_grad=False)
        with no_init():
            if isinstance(m, Embedding4bit):
                new = Embedding(m.num_embeddings, m.embedding_dim)
            else:
                new = Linear(m.in_features, m.out_features, bias=False)
                new.bias = m.bias
        new.weight = done[key]
        new.training = m.training
        model.set_submodule(name, new)
    return model
