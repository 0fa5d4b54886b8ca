"""Mixed-adapter batches: ``model(ids, adapter_names=["fr", None, "de"])``, each row with its own adapter.

One server, many adapters: rows of one batch may ask for different adapters (or None, the base model).
Every adapted layer splits the batch by name, runs each group of rows with its adapter alone (the same
code as a batch of that adapter only: variant forward, fused or step by step), and puts the rows back
in their order, so row b equals ``model(ids[b:b+1])`` with ``set_adapter(model, names[b])`` to rounding.
A layer that lacks a row's adapter (``layers_to_transform``) computes that row with its base weights.

The model's ``forward`` sets the names on the layers for one call (``tinylora.models.adapter_rows``);
``LoraLinear.forward`` hands the call to ``mixed_forward`` while they are set. Backward works: each
group's rows are gathered and scattered back with differentiable indexing, so every adapter's A and B
get the gradient of its own rows (PEFT refuses mixed batches in training; tinylora allows them, and the
tests compare the gradients with per-row runs). Refused, before the forward starts: a name no layer has,
a merged model, LoRA on an Embedding among the named adapters, and modules_to_save copies of them.

>>> from tinylora.models import GPT, GPTConfig
>>> from tinylora.lora import LoraConfig, add_adapter, apply_lora
>>> model = apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=2, init_lora_weights=False))
>>> model = add_adapter(model, "other", LoraConfig(r=2, init_lora_weights=False, seed=1))
>>> ids = np.zeros((3, 4), dtype=np.int64)
>>> logits, _ = model(ids, adapter_names=["default", None, "other"])
>>> logits.shape
(3, 4, 96)
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..backend import get_array_module
from ..tensor import Tensor


def row_groups(names) -> dict:
    """{adapter name or None: [row indices]}, in the order the names first occur."""
    groups: dict = {}
    for row, name in enumerate(names):
        groups.setdefault(name, []).append(row)
    return groups


def mixed_forward(layer, x) -> Tensor:
    """h for a batch whose row b uses ``layer.row_adapters[b]``: x (B, ..., in) -> (B, ..., out)."""
    names = [n if n in layer.adapters and not layer.disabled else None for n in layer.row_adapters]
    groups = row_groups(names)
    if len(groups) == 1:                                             # one adapter for every row
        return group_forward(layer, x, names[0])
    x = x if isinstance(x, Tensor) else Tensor(x)
    xp = get_array_module(x.data)
    outs = [group_forward(layer, x[xp.asarray(rows)], name) for name, rows in groups.items()]
    order = np.concatenate([rows for rows in groups.values()])      # host-ok: row indices, not data
    y = F.concat(outs, axis=0)                                       # (B, ..., out), rows grouped
    return y[xp.asarray(np.argsort(order))]                          # (B, ..., out), rows in order


def group_forward(layer, x, name: str | None) -> Tensor:
    """The layer's h for rows that all use adapter ``name`` (None: the base weights)."""
    if name is None:
        return layer.base_forward(x)
    adapter = layer.adapters[name]
    return adapter.variant.forward(layer, adapter, x)
