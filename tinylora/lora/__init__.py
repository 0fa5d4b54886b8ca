"""LoRA: freeze W0 and learn a low-rank update ΔW = B·A (Hu et al., 2021, arXiv:2106.09685).

For a frozen Linear with weight W0 of shape (out, in), an adapter of rank r adds
A (r, in) and B (out, r) and computes  h = W0·x + scaling · B·A·dropout(x),  scaling = α / r.
B starts at zero, so a fresh adapter changes nothing; A starts random, so B's first gradient
is not zero and training can begin (if both were zero, neither would ever move).

Names follow PEFT / loralib: ``LoraConfig``, ``apply_lora`` (PEFT's get_peft_model),
``print_trainable_parameters``, ``merge_and_unload``, ``set_adapter``, ``disable_adapters``.

>>> from tinylora.models import GPT, GPTConfig
>>> model = apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=4, lora_alpha=8))
>>> print_trainable_parameters(model)   # 2 layers x (q_proj, v_proj) x 4·(32 + 32) = 1,024
trainable params: 1,024 || all params: 33,664 || trainable%: 3.0418

One idea per file, imports flowing one way (variants ← config ← layer ← model ← io):

- ``config.py``: ``LoraConfig``;
- ``patterns.py``: per-layer settings, PEFT's ``rank_pattern``, ``alpha_pattern``, ``layers_to_transform``;
- ``variants.py``: rsLoRA's scaling α / √r, DoRA and PiSSA, each one object with hooks;
- ``layer.py``: ``LoraLinear``, the frozen Linear and its adapters, h = W0·x + b + s·B·(A·x);
- ``embedding.py``: ``LoraEmbedding``, LoRA on a lookup table (loralib's convention: A starts at zero);
- ``mixed.py``: mixed-adapter batches, ``model(ids, adapter_names=[...])``, one adapter per row;
- ``modules_to_save.py``: ``ModulesToSaveWrapper``, modules trained in full beside an adapter;
- ``model.py``: finding the target layers, adding, switching, merging and removing adapters,
  counting parameters, and LoRA+'s optimizer groups (B gets a larger learning rate);
- ``merge.py``: ``add_weighted_adapter``, one adapter from others (cat, svd, linear, TIES, DARE);
- ``io.py``: ``save_adapter`` / ``load_adapter``, PEFT's file layout;
- ``qlora.py``: ``quantize_base``, QLoRA's 4-bit frozen base (NF4) under float32 adapters.
"""
from .config import LoraConfig
from .embedding import LoraEmbedding
from .io import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, load_adapter, save_adapter
from .layer import LoraAdapter, LoRALinear, LoraLinear
from .merge import add_weighted_adapter
from .mixed import mixed_forward
from .model import (
    active_adapter,
    adapter_names,
    add_adapter,
    apply_lora,
    count_parameters,
    delete_adapter,
    disable_adapters,
    find_targets,
    get_delta_weights,
    lora_layers,
    lora_plus_param_groups,
    mark_only_lora_as_trainable,
    merge_and_unload,
    merge_lora,
    print_trainable_parameters,
    set_adapter,
    unload,
    unmerge_lora,
)
from .modules_to_save import ModulesToSaveWrapper
from .patterns import layer_index, pattern_key
from .qlora import Embedding4bit, Linear4bit, dequantize_base, is_quantized, quantize_base
from .variants import DoraVariant, LoraVariant, PissaVariant, lora_scaling

__all__ = [
    "LoraConfig", "LoraLinear", "LoRALinear", "LoraAdapter", "LoraEmbedding",
    "LoraVariant", "DoraVariant", "PissaVariant", "lora_scaling",
    "apply_lora", "add_adapter", "set_adapter", "active_adapter", "adapter_names", "delete_adapter",
    "disable_adapters", "mark_only_lora_as_trainable", "find_targets", "lora_layers",
    "merge_lora", "unmerge_lora", "merge_and_unload", "unload", "get_delta_weights",
    "count_parameters", "print_trainable_parameters", "lora_plus_param_groups",
    "save_adapter", "load_adapter", "ADAPTER_CONFIG_NAME", "ADAPTER_WEIGHTS_NAME", "add_weighted_adapter",
    "quantize_base", "dequantize_base", "is_quantized", "Linear4bit", "Embedding4bit",
    "ModulesToSaveWrapper", "pattern_key", "layer_index", "mixed_forward",
]
