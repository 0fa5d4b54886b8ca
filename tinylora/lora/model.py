"""Model surgery: find the Linear layers to adapt, wrap them, and switch, merge or remove adapters.

Any Module with Linear layers can be adapted; nothing here knows about a particular model.
Names follow PEFT: ``apply_lora`` (PEFT's get_peft_model), ``set_adapter``, ``disable_adapters``,
``merge_and_unload``, ``print_trainable_parameters``.
"""
from __future__ import annotations

import contextlib
import re

import numpy as np

from .._validate import check_choice
from ..backend import asnumpy
from ..nn import Embedding, Linear, Module
from .config import BIAS_CHOICES, LoraConfig
from .embedding import LORA_LAYER_TYPES, LoraEmbedding, check_embedding_targets, layer_shape, lora_layer_for
from .layer import LoraLinear
from .modules_to_save import (
    add_modules_to_save,
    delete_modules_to_save,
    find_modules_to_save,
    modules_to_save_layers,
    set_modules_to_save_adapter,
    unwrap_modules_to_save,
)
from .patterns import config_for_layer, select_layers
from .variants import variant_for


# ---- finding and wrapping layers ----------------------------------------------------------------
def lora_layers(model: Module) -> list[tuple[str, LoraLinear | LoraEmbedding]]:
    """(name, LoraLinear or LoraEmbedding) for every adapted layer of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LORA_LAYER_TYPES)]


def _linear_names(model: Module, embeddings: bool = False) -> list[str]:
    """Names of the Linear layers LoRA could adapt (a LoraLinear counts; the Linear inside it does not),
    and of the Embedding layers too when ``embeddings`` (they are adapted only when named)."""
    kinds = (Linear, LoraLinear, Embedding, LoraEmbedding) if embeddings else (Linear, LoraLinear)
    return [n for n, m in model.named_modules() if isinstance(m, kinds) and not n.endswith(".base_layer")]


def _matches(name: str, target_modules) -> bool:
    if target_modules == "all-linear":
        return name.split(".")[-1] != "lm_head"
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def find_targets(model: Module, config: LoraConfig) -> list[str]:
    """The names of the Linear layers that ``config.target_modules`` selects (if none: a ValueError listing
    the valid names).

    >>> from tinylora.models import GPT, GPTConfig
    >>> find_targets(GPT(GPTConfig.preset("nano")), LoraConfig(r=2, target_modules=["q_proj"]))
    ['blocks.0.attn.q_proj', 'blocks.1.attn.q_proj']
    """
    names = _linear_names(model, embeddings=config.target_modules != "all-linear")
    targets = [n for n in names if _matches(n, config.target_modules)]
    if not targets:
        linear = set(_linear_names(model))
        suffixes = sorted({n.split(".")[-1] for n in linear})
        tables = sorted({n.split(".")[-1] for n in names if n not in linear})
        raise ValueError(f"target_modules {config.target_modules!r} matched no Linear layer (nor Embedding) "
                         f"of this {type(model).__name__}. Valid names are the suffixes {suffixes} (and the "
                         f"Embedding suffixes {tables}), any full name such as {names[0]!r}, a regex over "
                         "full names, or 'all-linear'")
    return select_layers(model, targets, config, layer_shape)  # layers_to_transform; each layer's own r


def _check_can_add(model: Module, targets: list[str], adapter_name: str, config: LoraConfig) -> None:
    for n in targets:
        layer = model.get_submodule(n)
        if not isinstance(layer, LORA_LAYER_TYPES):
            continue
        if adapter_name in layer.adapters:
            raise ValueError(f"layer {n!r} already has an adapter named {adapter_name!r}; choose another "
                             "adapter_name, or call delete_adapter(model, name) first")
        if layer.merged:
            raise ValueError(f"layer {n!r} is merged; call unmerge_lora(model) before adding adapters")
        variants = [variant_for(config), *(adapter.variant for adapter in layer.adapters.values())]
        exclusive = [v for v in variants if v.exclusive]
        if exclusive:
            raise ValueError(f"layer {n!r}: a {exclusive[0].name} adapter rewrites the frozen weight, so it "
                             "must be the only adapter on its layers")


def add_adapter(model: Module, adapter_name: str, config: LoraConfig, *,
                targets: list[str] | None = None) -> Module:
    """Inject adapter ``adapter_name`` into the layers ``config`` targets; returns ``model``.

    The active adapter stays active (a model's first adapter becomes active), and only the active
    adapter trains. Everything is validated before anything changes. ``targets``: the layer names,
    when they were found already (``find_targets``).
    """
    if not isinstance(config, LoraConfig):
        raise TypeError(f"config must be a LoraConfig, got {type(config).__name__}")
    if not isinstance(adapter_name, str) or not adapter_name.isidentifier():
        raise ValueError(f"adapter_name must be a Python identifier such as 'default', got {adapter_name!r}")
    targets = find_targets(model, config) if targets is None else targets
    _check_can_add(model, targets, adapter_name, config)
    check_embedding_targets(model, targets, config)
    saved = find_modules_to_save(model, config.modules_to_save or [], targets)
    active = active_adapter(model) or adapter_name
    rng = np.random.default_rng(config.seed)
    for n in targets:
        layer = lora_layer_for(model.get_submodule(n))
        model.set_submodule(n, layer)
        layer.add_adapter(adapter_name, config_for_layer(config, n), rng)  # rank_pattern, alpha_pattern
    size = sum(p.size for n in targets for p in model.get_submodule(n).adapters[adapter_name].parameters())
    add_modules_to_save(model, adapter_name, saved, size)
    model.peft_config = {**getattr(model, "peft_config", {}), adapter_name: config}  # as PeftModel keeps it
    set_adapter(model, active)
    return model


def apply_lora(model: Module, config: LoraConfig, adapter_name: str = "default") -> Module:
    """Add LoRA to ``model`` in place and make it the one trainable thing (PEFT's get_peft_model).

    Injects ``adapter_name`` into the targeted Linear layers, makes it active, freezes every other
    parameter and leaves its A and B (and the biases ``config.bias`` asks for) trainable.

    >>> from tinylora.models import GPT, GPTConfig
    >>> model = apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=2, target_modules=["q_proj"]))
    >>> [name for name, p in model.named_parameters() if p.requires_grad]
    ['blocks.0.attn.q_proj.adapters.default.lora_A', 'blocks.0.attn.q_proj.adapters.default.lora_B', \
'blocks.1.attn.q_proj.adapters.default.lora_A', 'blocks.1.attn.q_proj.adapters.default.lora_B']
    """
    add_adapter(model, adapter_name, config)
    set_adapter(model, adapter_name)
    return model


# ---- which adapter computes ---------------------------------------------------------------------
def active_adapter(model: Module) -> str | None:
    """The name of the adapter that is active (None when there is none)."""
    return next((layer.active_adapter for _, layer in lora_layers(model) if layer.active_adapter), None)


def set_adapter(model: Module, adapter_name: str) -> None:
    """Make ``adapter_name`` active (and the only trainable adapter) in every layer that has it."""
    layers = lora_layers(model)
    having = [layer for _, layer in layers if adapter_name in layer.adapters]
    if not having:
        raise ValueError(f"no adapter named {adapter_name!r}; the model has {adapter_names(model)}")
    merged = [n for n, layer in layers if layer.merged]
    if merged:
        raise ValueError(f"cannot switch adapters while merged ({merged[0]!r}); "
                         "call unmerge_lora(model) first")
    for _, layer in layers:
        layer.active_adapter = adapter_name if adapter_name in layer.adapters else None
    set_modules_to_save_adapter(model, adapter_name)
    mark_only_lora_as_trainable(model, bias=having[0].adapters[adapter_name].config.bias)


def adapter_names(model: Module) -> list[str]:
    """Every adapter name in the model, sorted."""
    return sorted({name for _, layer in lora_layers(model) for name in layer.adapters})


def delete_adapter(model: Module, adapter_name: str) -> None:
    """Remove ``adapter_name`` from every layer (layers left with no adapter stay wrapped)."""
    layers = [(n, layer) for n, layer in lora_layers(model) if adapter_name in layer.adapters]
    if not layers:
        raise ValueError(f"no adapter named {adapter_name!r}; the model has {adapter_names(model)}")
    if any(layer.merged_adapter == adapter_name for _, layer in layers):
        raise ValueError(f"adapter {adapter_name!r} is merged; call unmerge_lora(model) first")
    for _, layer in layers:
        layer.delete_adapter(adapter_name)
    delete_modules_to_save(model, adapter_name)
    getattr(model, "peft_config", {}).pop(adapter_name, None)


def mark_only_lora_as_trainable(model: Module, bias: str = "none") -> None:
    """Freeze everything except the active adapters' A, B (and magnitudes), plus biases per ``bias``."""
    check_choice("bias", bias, BIAS_CHOICES)
    for name, p in model.named_parameters():
        p.requires_grad = bias == "all" and name.endswith(".bias")
    for _, layer in lora_layers(model):
        if layer.active_adapter is not None:
            layer.adapters[layer.active_adapter].requires_grad_(True)
        if bias == "lora_only" and getattr(layer.base_layer, "bias", None) is not None:  # Embedding: none
            layer.base_layer.bias.requires_grad = True
    for _, wrapper in modules_to_save_layers(model):  # modules_to_save: the active adapter's copies train
        if wrapper.active_adapter is not None:
            wrapper.modules_to_save[wrapper.active_adapter].requires_grad_(True)


@contextlib.contextmanager
def disable_adapters(model: Module):
    """Within the block the model computes with its base weights only (unmerged models).

    >>> from tinylora.models import GPT, GPTConfig
    >>> model = apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=2))
    >>> with disable_adapters(model):
    ...     logits, _ = model(np.zeros((1, 4), dtype=np.int64))
    """
    layers = [layer for _, layer in lora_layers(model)]
    if any(layer.merged for layer in layers):
        raise ValueError("disable_adapters() needs an unmerged model; call unmerge_lora(model) first")
    layers += [wrapper for _, wrapper in modules_to_save_layers(model)]  # they compute with the original
    previous = [layer.disabled for layer in layers]
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer, was in zip(layers, previous):
            layer.disabled = was


# ---- merging and unloading ----------------------------------------------------------------------
def merge_lora(model: Module) -> Module:
    """Merge the active adapter into W0 in every adapted layer: no extra latency at inference."""
    for _, layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: Module) -> Module:
    """Undo ``merge_lora``: every layer gets W0 back (to float rounding)."""
    for _, layer in lora_layers(model):
        if layer.merged:
            layer.unmerge()
    return model


def merge_and_unload(model: Module) -> Module:
    """Merge the active adapter and put each plain Linear back in place of its LoraLinear.

    Returns ``model`` itself (still a GPT), with the adapted weights and no adapters left.
    """
    for name, layer in lora_layers(model):
        if not layer.merged:
            layer.merge()
        model.set_submodule(name, layer.base_layer)
    unwrap_modules_to_save(model, keep_active=True)
    getattr(model, "peft_config", {}).clear()
    return model


def unload(model: Module) -> Module:
    """Remove every adapter without merging: back to the base model (PiSSA: W0 restored)."""
    unmerge_lora(model)
    for name, layer in lora_layers(model):
        for adapter_name in list(layer.adapters):
            layer.delete_adapter(adapter_name)
        model.set_submodule(name, layer.base_layer)
    unwrap_modules_to_save(model, keep_active=False)
    getattr(model, "peft_config", {}).clear()
    return model


def get_delta_weights(model: Module, adapter_name: str | None = None) -> dict:
    """Layer name -> ΔW (host NumPy, (out, in)) of ``adapter_name`` (default: the active one)."""
    if adapter_name is not None and adapter_name not in adapter_names(model):
        raise ValueError(f"no adapter named {adapter_name!r}; the model has {adapter_names(model)}")
    return {n: asnumpy(layer.delta_weight(adapter_name)) for n, layer in lora_layers(model)
            if (adapter_name or layer.active_adapter) in layer.adapters}


# ---- parameters: counting them, and LoRA+'s optimizer groups ------------------------------------
def count_parameters(model: Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; total includes the adapters, as PEFT counts."""
    params = list(model.parameters())
    return sum(p.size for p in params if p.requires_grad), sum(p.size for p in params)


def print_trainable_parameters(model: Module) -> None:
    """Print PEFT's line: ``trainable params: X || all params: Y || trainable%: Z``."""
    trainable, total = count_parameters(model)
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
          f"trainable%: {100 * trainable / total:.4f}")


def lora_plus_param_groups(model: Module, lr: float, ratio: float = 16.0,
                           weight_decay: float = 0.0) -> list[dict]:
    """Optimizer groups for LoRA+ (Hayou et al., 2024, arXiv:2402.12354): the B matrices get ``ratio × lr``,
    every other trainable parameter ``lr``.

    >>> from tinylora.models import GPT, GPTConfig
    >>> groups = lora_plus_param_groups(apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=2)), lr=1e-3)
    >>> [(len(g["params"]), g["lr"]) for g in groups]
    [(4, 0.001), (4, 0.016)]
    """
    if not lr > 0 or not ratio > 0:
        raise ValueError(f"lr and ratio must be > 0, got lr={lr!r}, ratio={ratio!r}")
    b_ids = {id(layer.adapters[layer.active_adapter].lora_B) for _, layer in lora_layers(model)
             if layer.active_adapter}
    trainable = [p for p in model.parameters() if p.requires_grad]
    others = [p for p in trainable if id(p) not in b_ids]
    b_matrices = [p for p in trainable if id(p) in b_ids]
    groups = [{"params": others, "lr": lr, "weight_decay": weight_decay},
              {"params": b_matrices, "lr": lr * ratio, "weight_decay": weight_decay}]
    return [g for g in groups if g["params"]]
