"""Adapter files in PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

A folder written by ``save_adapter`` loads with ``peft.PeftModel.from_pretrained`` (on a model with the
same module names, such as transformers' ``LlamaForCausalLM`` for tinylora's ``Llama``), and a folder
written by PEFT's ``save_pretrained`` loads with ``load_adapter``.

- ``adapter_config.json``: PEFT's LoraConfig keys (``LoraConfig.to_peft_dict``), with
  ``base_model_name_or_path`` from the model's ``name_or_path`` (set by ``tinylora.load_pretrained``).
- ``adapter_model.safetensors``: only the adapter's tensors (host NumPy, the model's dtype), under PEFT's
  names ``base_model.model.<layer>.lora_A.weight`` (r, in), ``...lora_B.weight`` (out, r), DoRA's
  ``...lora_magnitude_vector`` (out,), and an Embedding's ``...lora_embedding_A`` / ``lora_embedding_B``;
  with ``bias="all"`` or ``"lora_only"`` also the biases that train, as PEFT saves them.
- Its safetensors metadata, which PEFT ignores, holds ``format: pt`` (as PEFT writes), the (out, in)
  shape of every adapted layer (``tinylora.base_layers``) and a SHA-256 of the tensors
  (``tinylora.checksum``).

``load_adapter`` checks everything before the model changes: the config (a PEFT field tinylora does not
implement is refused by name), the checksum (a flipped bit is an error naming the file), that every tensor
is finite and real, and that the adapter's layers are exactly the ones its ``target_modules`` selects in
this model, with the same shapes (from the metadata, or from the tensors for a file PEFT wrote).
Adapters saved by earlier tinylora versions (``"format_version": 1``, keys ``<layer>.lora_A``) still
load; saving them again writes this format.

>>> import tempfile
>>> from tinylora.models import GPT, GPTConfig
>>> from tinylora.lora import LoraConfig, apply_lora
>>> folder = tempfile.mkdtemp()
>>> save_adapter(apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=2)), folder)
>>> sorted(os.listdir(folder))
['adapter_config.json', 'adapter_model.safetensors']
>>> sorted(load_safetensors(os.path.join(folder, ADAPTER_WEIGHTS_NAME))[0])[:2]
['base_model.model.blocks.0.attn.q_proj.lora_A.weight', 'base_model.model.blocks.0.attn.q_proj.lora_B.weight']
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .._validate import check_loaded_array, check_path
from ..backend import asnumpy, to_device
from ..io import atomic_writer, load_safetensors, save_safetensors
from ..nn import Embedding, Module
from .config import LoraConfig
from .model import adapter_names, add_adapter, find_targets, lora_layers, set_adapter
from .modules_to_save import find_modules_to_save, modules_to_save_tensors
from .patterns import layer_settings
from .variants import variant_for

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # PEFT's PeftModel holds the model as .base_model.model
# tinylora's adapter parameter -> PEFT's key suffix, for a Linear and for an Embedding
PEFT_KEYS = {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight", "lora_magnitude": "lora_magnitude_vector"}
PEFT_EMBEDDING_KEYS = {"lora_A": "lora_embedding_A", "lora_B": "lora_embedding_B"}
SHAPES_KEY, CHECKSUM_KEY = "tinylora.base_layers", "tinylora.checksum"


def _is_embedding(layer) -> bool:
    return isinstance(getattr(layer, "base_layer", layer), Embedding)


def _layer_shape(layer) -> tuple[int, int]:
    """(out, in) of a Linear, an Embedding (embedding_dim, num_embeddings) or the LoRA layer around one."""
    base = getattr(layer, "base_layer", layer)
    if isinstance(base, Embedding):
        return tuple(base.weight.shape[::-1])
    return base.out_features, base.in_features


def tensor_checksum(arrays: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: ``"sha256:<hex>"``."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])  # host-ok: host arrays read from or written to a file
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return "sha256:" + digest.hexdigest()


# ---- saving ---------------------------------------------------------------------------------------
def _trained_biases(model: Module, layers, bias: str) -> dict:
    """The biases ``bias`` trains, by parameter name (an adapted layer's is ``<layer>.base_layer.bias``)."""
    if bias == "none":
        return {}
    if bias == "all":
        return {n: p for n, p in model.named_parameters() if n.endswith(".bias")}
    return {f"{n}.base_layer.bias": layer.base_layer.bias for n, layer in layers
            if getattr(layer.base_layer, "bias", None) is not None}


def save_adapter(model: Module, directory, adapter_name: str = "default") -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` in PEFT's format into ``directory``,
    each atomically: the adapter's tensors only (host NumPy), with the base's (out, in) shapes and a
    checksum in the metadata."""
    directory = check_path("directory", directory, where="save_adapter")
    layers = [(n, layer) for n, layer in lora_layers(model) if adapter_name in layer.adapters]
    if not layers:
        raise ValueError(f"the model has no adapter named {adapter_name!r}; it has {adapter_names(model)}")
    if any(layer.merged_adapter == adapter_name for _, layer in layers):
        raise ValueError(f"adapter {adapter_name!r} is merged; call unmerge_lora(model) before saving it")
    config = getattr(model, "peft_config", {}).get(adapter_name, layers[0][1].adapters[adapter_name].config)
    copies = modules_to_save_tensors(model, adapter_name)
    arrays = {PEFT_PREFIX + n: asnumpy(p.data) for n, p in copies.items()}
    for name, layer in layers:
        keys = PEFT_EMBEDDING_KEYS if _is_embedding(layer) else PEFT_KEYS
        for kind, p in layer.adapters[adapter_name].named_parameters():
            arrays[f"{PEFT_PREFIX}{name}.{keys[kind]}"] = asnumpy(p.data)
    for name, p in _trained_biases(model, layers, config.bias).items():
        arrays[PEFT_PREFIX + name] = asnumpy(p.data)
    shapes = json.dumps({n: list(_layer_shape(layer)) for n, layer in layers})
    metadata = {"format": "pt", SHAPES_KEY: shapes, CHECKSUM_KEY: tensor_checksum(arrays)}
    os.makedirs(directory, exist_ok=True)
    save_safetensors(os.path.join(directory, ADAPTER_WEIGHTS_NAME), arrays, metadata)
    with atomic_writer(os.path.join(directory, ADAPTER_CONFIG_NAME), "w") as f:
        json.dump(config.to_peft_dict(getattr(model, "name_or_path", None)), f, indent=2)


# ---- loading --------------------------------------------------------------------------------------
def load_adapter(model: Module, directory, adapter_name: str = "default", activate: bool = True) -> Module:
    """Add the adapter saved in ``directory`` (by tinylora or PEFT) to ``model`` as ``adapter_name``.

    Every check (config, checksum, finite tensors, layer names and shapes) runs before the model changes.
    """
    directory = check_path("directory", directory, where="load_adapter")
    config, legacy_shapes = _read_config(os.path.join(directory, ADAPTER_CONFIG_NAME))
    weights_path = os.path.join(directory, ADAPTER_WEIGHTS_NAME)
    targets = find_targets(model, config)
    saved = find_modules_to_save(model, config.modules_to_save or [], targets)
    factors, biases, shapes, copies = _read_weights(weights_path, legacy_shapes, saved)
    copies = _check_modules_to_save(model, saved, copies, weights_path)
    _check_base_layers(model, targets, shapes, directory)
    _check_factors(factors, shapes, config, weights_path)
    bias_params = _check_biases(model, biases, config, weights_path)
    add_adapter(model, adapter_name, config, targets=targets)
    for name in targets:
        for kind, p in model.get_submodule(name).adapters[adapter_name].named_parameters():
            p.data = to_device(factors[name][kind].astype(p.dtype), p.device)
    for name, p in bias_params.items():
        p.data = to_device(biases[name].astype(p.dtype), p.device)
    for name, p in modules_to_save_tensors(model, adapter_name).items():
        p.data = to_device(copies[name].astype(p.dtype), p.device)
    if activate:
        set_adapter(model, adapter_name)
    return model


def _read_config(path: str) -> tuple[LoraConfig, dict | None]:
    """The LoraConfig of an ``adapter_config.json``, and the base shapes an old tinylora file keeps there."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {ADAPTER_CONFIG_NAME} at {path!r}")
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if isinstance(saved, dict) and saved.get("format_version") == 1:  # tinylora's format before PEFT's
            return LoraConfig.from_dict(saved["lora_config"]), dict(saved["base_layers"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path!r} is truncated or corrupt: {type(err).__name__}: {err}") from None
    return LoraConfig.from_peft_dict(saved, where=repr(path)), None


def _read_weights(path: str, legacy_shapes: dict | None, saved=()):
    """(factors {layer: {kind: array}}, biases {name: array}, base shapes {layer: (out, in)}, the copies of
    the modules ``saved`` lists {<module>.<param>: array}), all checked."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {ADAPTER_WEIGHTS_NAME} at {path!r}")
    arrays, metadata = load_safetensors(path)
    if CHECKSUM_KEY in metadata and tensor_checksum(arrays) != metadata[CHECKSUM_KEY]:
        raise ValueError(f"{path!r} is damaged: the checksum of its tensors does not match the one saved "
                         "with them (a changed byte); save the adapter again")
    for name, array in arrays.items():
        check_loaded_array(name, array, where=path)
    factors, biases, copies = {}, {}, {}
    for key, array in arrays.items():
        if key.startswith(tuple(f"{PEFT_PREFIX}{m}." for m in saved)):  # modules_to_save
            copies[key.removeprefix(PEFT_PREFIX)] = array
            continue
        layer, kind = _parse_key(key, legacy_shapes is not None)
        if kind == "bias":
            biases[layer] = array
        elif kind is None:
            raise ValueError(f"{path!r} holds the tensor {key!r}, which is not a LoRA A, B or magnitude, "
                             "nor a copy of a module its config's modules_to_save names")
        else:
            factors.setdefault(layer, {})[kind] = array
    if legacy_shapes is not None:
        shapes = legacy_shapes
    elif SHAPES_KEY in metadata:
        try:
            shapes = {n: tuple(s) for n, s in json.loads(metadata[SHAPES_KEY]).items()}
        except (ValueError, TypeError, AttributeError) as err:
            raise ValueError(f"{path!r}: its metadata {SHAPES_KEY!r} is corrupt: {err}") from None
    else:  # a file PEFT wrote: the shapes the tensors imply, A (r, in) and B (out, r)
        shapes = {n: _shape_from_factors(n, f, path) for n, f in factors.items()}
    if set(shapes) != set(factors):
        raise ValueError(f"{path!r}: its tensors cover the layers {sorted(factors)}, but its metadata lists "
                         f"{sorted(shapes)}")
    return factors, biases, {n: tuple(s) for n, s in shapes.items()}, copies


def _check_modules_to_save(model: Module, saved: list[str], copies: dict, path: str) -> dict:
    """The saved copies must be exactly the parameters of the modules ``saved`` names, at their shapes."""
    want = {f"{m}.{n}": p for m in saved for n, p in model.get_submodule(m).named_parameters()
            if ".modules_to_save." not in f".{n}"}
    want = {k.replace(".original_module.", "."): p for k, p in want.items()}
    if sorted(want) != sorted(copies):
        raise ValueError(f"{path!r}: modules_to_save needs the tensors {sorted(want)}, the file has "
                         f"{sorted(copies)}")
    for name, p in want.items():
        if tuple(copies[name].shape) != tuple(p.shape):
            raise ValueError(f"{path!r}: modules_to_save tensor {name!r} has shape "
                             f"{tuple(copies[name].shape)}, the model's is {tuple(p.shape)}")
    return copies


def _parse_key(key: str, legacy: bool) -> tuple[str, str | None]:
    """(layer, kind) of a tensor's key; kind "bias" for a bias, None when it is no adapter tensor."""
    if legacy:  # <layer>.lora_A
        layer, _, kind = key.rpartition(".")
        return layer, kind if kind in PEFT_KEYS else None
    name = key.removeprefix(PEFT_PREFIX)
    for table in (PEFT_KEYS, PEFT_EMBEDDING_KEYS):
        for kind, suffix in table.items():
            if name.endswith("." + suffix):
                return name[:-len(suffix) - 1], kind
    if key.startswith(PEFT_PREFIX) and name.endswith(".bias"):
        return name, "bias"
    return name, None


def _shape_from_factors(layer: str, factors: dict, path: str) -> tuple[int, int]:
    if "lora_A" not in factors or "lora_B" not in factors or factors["lora_A"].ndim != 2 \
            or factors["lora_B"].ndim != 2:
        raise ValueError(f"{path!r}: layer {layer!r} needs a 2-D lora_A (r, in) and lora_B (out, r); "
                         f"it has {sorted((k, v.shape) for k, v in factors.items())}")
    return factors["lora_B"].shape[0], factors["lora_A"].shape[1]


def _check_base_layers(model: Module, targets: list[str], shapes: dict, directory) -> None:
    """The layers the adapter was saved from must be exactly this model's targets, with equal shapes."""
    where = f"adapter in {os.fspath(directory)!r}"
    if sorted(targets) != sorted(shapes):
        missing, extra = sorted(set(shapes) - set(targets)), sorted(set(targets) - set(shapes))
        raise ValueError(f"{where} does not fit this model: layers the adapter has but the model lacks: "
                         f"{missing}; targeted layers of the model the adapter lacks: {extra}")
    for name in targets:
        (out_f, in_f), have = shapes[name], _layer_shape(model.get_submodule(name))
        if have != (out_f, in_f):
            raise ValueError(f"{where} was trained on layer {name!r} of shape (out, in) = ({out_f}, {in_f}), "
                             f"but this model's {name!r} is ({have[0]}, {have[1]})")


def _check_factors(factors: dict, shapes: dict, config: LoraConfig, path: str) -> None:
    """Each layer holds exactly the tensors its variant needs (A, B, DoRA's m), at the shapes it needs."""
    for name, (out_f, in_f) in shapes.items():
        r = layer_settings(config, name)[0]                               # rank_pattern
        want = variant_for(config).shapes(r, out_f, in_f)
        extra = sorted(set(factors[name]) - set(want))
        if extra:
            raise ValueError(f"{path!r}: layer {name!r} holds {extra}, which this config "
                             f"(use_dora={config.use_dora}) has no place for")
        for kind, shape in want.items():
            got = factors[name].get(kind)
            if got is None or tuple(got.shape) != shape:
                raise ValueError(f"{path!r}: adapter weights for {name}.{kind}: expected shape {shape} "
                                 f"(r={r}), got {None if got is None else tuple(got.shape)}")


def _check_biases(model: Module, biases: dict, config: LoraConfig, path: str) -> dict:
    """{name: the model's bias Parameter} for each saved bias, which must exist with the same shape."""
    if biases and config.bias == "none":
        raise ValueError(f"{path!r} holds biases {sorted(biases)[:3]}, but its config says bias='none'")
    params = {}
    for name, array in biases.items():
        module_name = name.removesuffix(".bias").removesuffix(".base_layer")
        try:
            module = model.get_submodule(module_name)
        except (AttributeError, KeyError):
            module = None
        bias = getattr(getattr(module, "base_layer", module), "bias", None)
        if bias is None or tuple(bias.shape) != tuple(array.shape):
            have = "no such bias" if bias is None else f"one of shape {tuple(bias.shape)}"
            raise ValueError(f"{path!r} holds the bias {name!r} of shape {tuple(array.shape)}, but this "
                             f"model has {have}")
        params[name] = bias
    return params
