"""Saving and loading adapters in PEFT's layout: ``adapter_config.json`` + ``adapter_model.safetensors``.

The weights file holds only the adapter's parameters (host NumPy), named ``<layer>.lora_A``,
``<layer>.lora_B`` (and DoRA's ``<layer>.lora_magnitude``); the JSON holds the LoraConfig and the
(out, in) shape of every adapted layer, so a load into the wrong base model is refused before it starts.

>>> import tempfile
>>> from tinylora.models import GPT, GPTConfig
>>> from tinylora.lora import LoraConfig, apply_lora
>>> folder = tempfile.mkdtemp()
>>> save_adapter(apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=2)), folder)
>>> sorted(os.listdir(folder))
['adapter_config.json', 'adapter_model.safetensors']
"""
from __future__ import annotations

import json
import os

from ..backend import asnumpy, to_device
from ..io import atomic_writer, load_safetensors, save_safetensors
from ..nn import Module
from .config import LoraConfig
from .model import adapter_names, add_adapter, find_targets, lora_layers, set_adapter
from .variants import variant_for

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"


def _adapter_arrays(layers, adapter_name: str) -> dict:
    """``{layer.lora_A: host array, layer.lora_B: ..., [layer.lora_magnitude: ...]}`` of one adapter."""
    return {f"{name}.{kind}": asnumpy(p.data) for name, layer in layers
            for kind, p in layer.adapters[adapter_name].named_parameters()}


def save_adapter(model: Module, directory, adapter_name: str = "default") -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (adapter weights only, host
    NumPy) into ``directory``, each atomically, with the (out, in) shape of every adapted layer."""
    layers = [(n, layer) for n, layer in lora_layers(model) if adapter_name in layer.adapters]
    if not layers:
        raise ValueError(f"the model has no adapter named {adapter_name!r}; it has {adapter_names(model)}")
    if any(layer.merged_adapter == adapter_name for _, layer in layers):
        raise ValueError(f"adapter {adapter_name!r} is merged; call unmerge_lora(model) before saving it")
    config = layers[0][1].adapters[adapter_name].config
    base_layers = {n: [layer.out_features, layer.in_features] for n, layer in layers}
    os.makedirs(directory, exist_ok=True)
    save_safetensors(os.path.join(directory, ADAPTER_WEIGHTS_NAME), _adapter_arrays(layers, adapter_name),
                     {"format": "tinylora-adapter"})
    with atomic_writer(os.path.join(directory, ADAPTER_CONFIG_NAME), "w") as f:
        saved = {"lora_config": config.to_dict(), "base_layers": base_layers, "format_version": 1}
        json.dump(saved, f, indent=2)


def load_adapter(model: Module, directory, adapter_name: str = "default", activate: bool = True) -> Module:
    """Add the adapter saved in ``directory`` to ``model``, which must have the same base shapes.

    Every check (files, layer names, shapes) runs before the model changes.
    """
    config, base_layers = _read_adapter_config(os.path.join(directory, ADAPTER_CONFIG_NAME))
    arrays, _ = load_safetensors(os.path.join(directory, ADAPTER_WEIGHTS_NAME))
    targets = find_targets(model, config)
    _check_base_layers(model, targets, base_layers, directory)
    _check_arrays(arrays, base_layers, config)
    add_adapter(model, adapter_name, config, targets=targets)
    for name in targets:
        for kind, p in model.get_submodule(name).adapters[adapter_name].named_parameters():
            p.data = to_device(arrays[f"{name}.{kind}"].astype(p.dtype), p.device)
    if activate:
        set_adapter(model, adapter_name)
    return model


def _read_adapter_config(path: str) -> tuple[LoraConfig, dict]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {ADAPTER_CONFIG_NAME} at {path!r}")
    try:
        with open(path) as f:
            saved = json.load(f)
        return LoraConfig.from_dict(saved["lora_config"]), dict(saved["base_layers"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path!r} is truncated or corrupt: {type(err).__name__}: {err}") from None


def _check_base_layers(model: Module, targets: list[str], base_layers: dict, directory) -> None:
    """The layers the adapter was saved from must be exactly this model's targets, with equal shapes."""
    where = f"adapter in {os.fspath(directory)!r}"
    if sorted(targets) != sorted(base_layers):
        missing, extra = sorted(set(base_layers) - set(targets)), sorted(set(targets) - set(base_layers))
        raise ValueError(f"{where} does not fit this model: layers the adapter has but the model lacks: "
                         f"{missing}; targeted layers of the model the adapter lacks: {extra}")
    for name in targets:
        layer, (out_f, in_f) = model.get_submodule(name), base_layers[name]
        if (layer.out_features, layer.in_features) != (out_f, in_f):
            raise ValueError(f"{where} was trained on layer {name!r} of shape (out, in) = ({out_f}, {in_f}), "
                             f"but this model's {name!r} is ({layer.out_features}, {layer.in_features})")


def _check_arrays(arrays: dict, base_layers: dict, config: LoraConfig) -> None:
    for name, (out_f, in_f) in base_layers.items():
        for kind, shape in variant_for(config).shapes(config.r, out_f, in_f).items():
            got = arrays.get(f"{name}.{kind}")
            if got is None or tuple(got.shape) != shape:
                raise ValueError(f"adapter weights for {name}.{kind}: expected shape {shape}, "
                                 f"got {None if got is None else tuple(got.shape)}")
