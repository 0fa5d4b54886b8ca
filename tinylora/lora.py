"""LoRA: freeze W0 and learn a low-rank update ΔW = B·A (Hu et al., 2021, arXiv:2106.09685).

For a frozen Linear with weight W0 of shape (out, in), an adapter of rank r adds
A (r, in) and B (out, r) and computes  h = W0·x + scaling · B·A·dropout(x),  scaling = α / r.
B starts at zero, so a fresh adapter changes nothing; A starts random, so B's first gradient
is not zero and training can begin (if both were zero, neither would ever move).

Names follow PEFT / loralib: ``LoraConfig``, ``apply_lora`` (PEFT's get_peft_model),
``print_trainable_parameters``, ``merge_and_unload``, ``set_adapter``, ``disable_adapters``.

>>> from tinylora.gpt import GPT, GPTConfig
>>> model = apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=4, lora_alpha=8))
>>> print_trainable_parameters(model)
trainable params: 1,024 || all params: 27,712 || trainable%: 3.6952

Variants (each a flag on ``LoraConfig``):
- rsLoRA (Kalajdzievski, 2023, arXiv:2312.03732): scaling = α / √r, stable across ranks.
- DoRA (Liu et al., 2024, arXiv:2402.09353): W = m · (W0 + sBA) / ‖W0 + sBA‖ row-wise, with the
  norm treated as a constant in backward, as the paper recommends.
- PiSSA (Meng et al., 2024, arXiv:2404.02948): A, B from the top-r SVD of W0; the frozen weight
  becomes the residual W0 − s·B·A, so the output is unchanged at init.
- LoRA+ (Hayou et al., 2024, arXiv:2402.12354): B gets a larger learning rate (``lora_plus_param_groups``).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from . import functional as F
from .backend import asnumpy, get_array_module, to_device
from .checkpoint import atomic_writer, load_safetensors, save_safetensors
from .nn import Dropout, Linear, Module, Parameter
from .tensor import Tensor

_INIT_CHOICES = ("gaussian", "kaiming", "pissa", True, False)
_BIAS_CHOICES = ("none", "all", "lora_only")
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"


@dataclass
class LoraConfig:
    """What to adapt and how. Validated at creation.

    target_modules: module-name suffixes (``"q_proj"`` matches ``blocks.3.attn.q_proj``), a
    regex string matched against the full name, or ``"all-linear"`` (every Linear but lm_head).
    init_lora_weights: "gaussian" (A ~ N(0, 1/r)), "kaiming"/True (A ~ U(±1/√in)), "pissa",
    or False (B random too: the adapter changes the output at once; for testing only).
    bias: which biases train: "none", "all", or "lora_only" (those of adapted layers).
    """

    r: int = 8
    lora_alpha: float = 16
    target_modules: str | tuple = ("q_proj", "v_proj")
    lora_dropout: float = 0.0
    use_rslora: bool = False
    use_dora: bool = False
    init_lora_weights: str | bool = "gaussian"
    bias: str = "none"
    seed: int | None = 0

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, (int, np.integer)) or self.r <= 0:
            raise ValueError(f"LoraConfig.r must be a positive int, got {self.r!r}")
        if isinstance(self.lora_alpha, bool) or not isinstance(self.lora_alpha, (int, float)) or not self.lora_alpha > 0:
            raise ValueError(f"LoraConfig.lora_alpha must be a number > 0, got {self.lora_alpha!r}")
        if not isinstance(self.lora_dropout, (int, float)) or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig.lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if isinstance(self.target_modules, list):
            self.target_modules = tuple(self.target_modules)
        if isinstance(self.target_modules, str):
            try:
                re.compile(self.target_modules)
            except re.error as err:
                raise ValueError(f"LoraConfig.target_modules {self.target_modules!r} is not a valid regex: {err}") from None
        elif not (isinstance(self.target_modules, tuple) and self.target_modules
                  and all(isinstance(t, str) and t for t in self.target_modules)):
            raise ValueError(f"LoraConfig.target_modules must be a non-empty list of names, a regex string or "
                             f"'all-linear'; got {self.target_modules!r}")
        if self.init_lora_weights not in _INIT_CHOICES:
            raise ValueError(f"LoraConfig.init_lora_weights must be one of {_INIT_CHOICES}, got {self.init_lora_weights!r}")
        if self.bias not in _BIAS_CHOICES:
            raise ValueError(f"LoraConfig.bias must be one of {_BIAS_CHOICES}, got {self.bias!r}")
        if self.use_dora and self.init_lora_weights == "pissa":
            raise ValueError("LoraConfig: use_dora=True cannot be combined with init_lora_weights='pissa'")

    @property
    def scaling(self) -> float:
        """α / r, or α / √r with rsLoRA."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target_modules"] = d["target_modules"] if isinstance(d["target_modules"], str) else list(d["target_modules"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LoraConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class _Slots(Module):
    """A named bag of parameters, one per adapter name: ``slots["default"]``."""

    def __getitem__(self, name):
        return getattr(self, name)

    def __contains__(self, name):
        return isinstance(getattr(self, name, None), Parameter)

    def __delitem__(self, name):
        delattr(self, name)


@dataclass
class _AdapterState:
    """Per-adapter settings of one LoRALinear (the trainable factors live in lora_A/lora_B)."""

    config: LoraConfig
    dropout: Dropout
    pissa_init: tuple = field(default=None)  # (A0, B0) arrays for PiSSA, to recover W0 when disabled


class LoRALinear(Module):
    """A frozen ``Linear`` plus one or more low-rank adapters; one adapter is active at a time.

    Shapes (paper notation): W0 (out, in), A (r, in), B (out, r), x (..., in) -> (..., out).
    """

    def __init__(self, base_layer: Linear):
        super().__init__()
        if not isinstance(base_layer, Linear):
            raise TypeError(f"LoRALinear wraps a Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.lora_A = _Slots()
        self.lora_B = _Slots()
        self.lora_magnitude = _Slots()  # DoRA only
        self.adapters: dict[str, _AdapterState] = {}
        self.active_adapter: str | None = None
        self.merged_adapter: str | None = None
        self.disabled = False
        for p in base_layer.parameters():
            p.requires_grad = False

    in_features = property(lambda self: self.base_layer.in_features)
    out_features = property(lambda self: self.base_layer.out_features)
    merged = property(lambda self: self.merged_adapter is not None)

    def extra_repr(self):
        return f"adapters={list(self.adapters)}, active={self.active_adapter!r}, merged={self.merged}"

    # ---- adding adapters ------------------------------------------------------------------
    def add_adapter(self, name: str, config: LoraConfig, rng: np.random.Generator) -> None:
        """Create A (r, in) and B (out, r) for adapter ``name`` on the host, then move them to W0's device."""
        W0 = self.base_layer.weight
        out_f, in_f = W0.shape
        r, dtype, device = config.r, W0.dtype, W0.device
        A, B = self._initial_factors(config, rng, out_f, in_f, dtype)
        state = _AdapterState(config=config, dropout=Dropout(config.lora_dropout, seed=config.seed))
        if config.init_lora_weights == "pissa":
            A, B, residual = _pissa_factors(asnumpy(W0.data), r, config.scaling)
            W0.data = to_device(residual.astype(dtype), device)    # (out, in) frozen residual
            state.pissa_init = (to_device(A, device), to_device(B, device))
        setattr(self.lora_A, name, Parameter(to_device(A.astype(dtype), device)))
        setattr(self.lora_B, name, Parameter(to_device(B.astype(dtype), device)))
        if config.use_dora:
            setattr(self.lora_magnitude, name, Parameter(_row_norm(W0.data)))  # (out,) = ‖W0‖ per row
        self.adapters[name] = state

    @staticmethod
    def _initial_factors(config, rng, out_f, in_f, dtype):
        r, init = config.r, config.init_lora_weights
        if init in ("kaiming", True):
            A = rng.uniform(-1 / math.sqrt(in_f), 1 / math.sqrt(in_f), size=(r, in_f))
        else:
            A = rng.normal(0.0, 1.0 / r, size=(r, in_f))
        B = rng.normal(0.0, 1.0 / r, size=(out_f, r)) if init is False else np.zeros((out_f, r))
        return A.astype(dtype), B.astype(dtype)

    # ---- the math ---------------------------------------------------------------------------
    def delta_weight(self, name: str | None = None):
        """ΔW = scaling · B·A as an array (out, in) (DoRA: the full change of the merged weight)."""
        name = name or self.active_adapter
        A, B = self.lora_A[name].data, self.lora_B[name].data
        scaling = self.adapters[name].config.scaling
        delta = (B @ A) * scaling                                    # (out, in)
        if self.adapters[name].config.use_dora:
            W = self.base_layer.weight.data + delta                  # (out, in)
            delta = W * (self.lora_magnitude[name].data / _row_norm(W))[:, None] - self.base_layer.weight.data
        return delta

    def forward(self, x: Tensor) -> Tensor:
        name = self.active_adapter
        if self.merged_adapter is not None:
            if self.disabled:
                raise ValueError("disable_adapters() on a merged model: call unmerge_lora(model) first")
            return self.base_layer(x)
        if name is None or self.disabled:
            return self._disabled_forward(x)
        state = self.adapters[name]
        A, B = self.lora_A[name], self.lora_B[name]
        h = F.linear(F.linear(state.dropout(x), A), B) * state.config.scaling  # (..., r) -> (..., out)
        if not state.config.use_dora:
            return self.base_layer(x) + h                                        # (..., out)
        return self._dora_forward(x, h, name)

    def _dora_forward(self, x: Tensor, lora_out: Tensor, name: str) -> Tensor:
        """m / ‖W0 + sBA‖ · (W0·x + sBA·x) + bias, the norm held constant (no gradient through it)."""
        W0, bias = self.base_layer.weight, self.base_layer.bias
        s = self.adapters[name].config.scaling
        norm = _row_norm(W0.data + (self.lora_B[name].data @ self.lora_A[name].data) * s)  # (out,) constant
        out = (F.linear(x, W0) + lora_out) * (self.lora_magnitude[name] / norm)            # (..., out)
        return out + bias if bias is not None else out

    def _disabled_forward(self, x: Tensor) -> Tensor:
        out = self.base_layer(x)                                                 # (..., out)
        pissa = [s for s in self.adapters.values() if s.pissa_init is not None]
        if pissa:  # the frozen weight is the PiSSA residual: add back s·B0·A0 to get W0
            A0, B0 = pissa[0].pissa_init
            out = out + F.linear(F.linear(x, Tensor(A0)), Tensor(B0)) * pissa[0].config.scaling
        return out

    # ---- merge / unmerge ----------------------------------------------------------------------
    def merge(self) -> None:
        """W0 ← W0 + s·B·A for the active adapter (DoRA: rows rescaled to m). Never implicit."""
        name = self.active_adapter
        if self.merged_adapter is not None:
            raise ValueError(f"this LoRALinear is already merged (adapter {self.merged_adapter!r}); unmerge first")
        if name is None:
            return
        config = self.adapters[name].config
        W = self.base_layer.weight.data + (self.lora_B[name].data @ self.lora_A[name].data) * config.scaling
        if config.use_dora:
            self._merge_norm = _row_norm(W)                                  # (out,) kept for unmerge
            W = W * (self.lora_magnitude[name].data / self._merge_norm)[:, None]
        self.base_layer.weight.data = W                                      # (out, in)
        self.merged_adapter = name

    def unmerge(self) -> None:
        """Undo ``merge``: W0 ← W − s·B·A (DoRA: first undo the row rescaling)."""
        name = self.merged_adapter
        if name is None:
            raise ValueError("this LoRALinear is not merged")
        config = self.adapters[name].config
        W = self.base_layer.weight.data
        if config.use_dora:
            W = W * (self._merge_norm / self.lora_magnitude[name].data)[:, None]
        self.base_layer.weight.data = W - (self.lora_B[name].data @ self.lora_A[name].data) * config.scaling
        self.merged_adapter = None


def _row_norm(W):
    """‖W‖ of each output row: (out, in) -> (out,)."""
    return get_array_module(W).sqrt((W * W).sum(axis=1))


def _pissa_factors(W0: np.ndarray, r: int, scaling: float):
    """Top-r SVD of W0 (out, in): A = √S Vᵀ/√s (r, in), B = U √S/√s (out, r), residual = W0 − s·B·A."""
    W64 = W0.astype(np.float64)
    U, S, Vt = np.linalg.svd(W64, full_matrices=False)  # host-ok: init-time SVD on the host
    root = np.sqrt(S[:r] / scaling)
    A = root[:, None] * Vt[:r]        # (r, in)
    B = U[:, :r] * root[None, :]      # (out, r)
    return A, B, W64 - scaling * (B @ A)


# ---- finding and wrapping layers --------------------------------------------------------------
def lora_layers(model: Module):
    """(name, LoRALinear) for every adapted layer of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def _linear_names(model: Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (Linear, LoRALinear))
            and not any(n.startswith(w + ".") for w, _ in lora_layers(model))]


def _matches(name: str, target_modules) -> bool:
    if target_modules == "all-linear":
        return name.split(".")[-1] != "lm_head"
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def _find_targets(model: Module, config: LoraConfig) -> list[str]:
    """Names of the Linear layers ``config.target_modules`` selects; ValueError listing valid ones if none."""
    names = _linear_names(model)
    targets = [n for n in names if _matches(n, config.target_modules)]
    if not targets:
        suffixes = sorted({n.split(".")[-1] for n in names})
        raise ValueError(f"target_modules {config.target_modules!r} matched no Linear layer. Valid suffixes: "
                         f"{suffixes}; full names include {names[:6]}{' ...' if len(names) > 6 else ''}; "
                         "or use 'all-linear'")
    for n in targets:
        layer = model.get_submodule(n)
        out_f, in_f = layer.out_features, layer.in_features
        if config.r > min(in_f, out_f):
            raise ValueError(f"r={config.r} is larger than min(in, out) = {min(in_f, out_f)} of layer {n!r} "
                             f"(shape {out_f}x{in_f}); a rank cannot exceed the matrix's smaller side")
    return targets


def add_adapter(model: Module, adapter_name: str, config: LoraConfig) -> Module:
    """Inject adapter ``adapter_name`` into the layers ``config`` targets, without activating it
    (unless the model had no adapter yet). All validation happens before anything changes."""
    if not isinstance(config, LoraConfig):
        raise TypeError(f"config must be a LoraConfig, got {type(config).__name__}")
    if not isinstance(adapter_name, str) or not adapter_name.isidentifier():
        raise ValueError(f"adapter_name must be a Python identifier such as 'default', got {adapter_name!r}")
    targets = _find_targets(model, config)
    for n in targets:
        layer = model.get_submodule(n)
        if isinstance(layer, LoRALinear) and adapter_name in layer.adapters:
            raise ValueError(f"layer {n!r} already has an adapter named {adapter_name!r}; choose another "
                             "adapter_name, or call delete_adapter(model, name) first")
        if isinstance(layer, LoRALinear) and layer.merged:
            raise ValueError(f"layer {n!r} is merged; call unmerge_lora(model) before adding adapters")
        if isinstance(layer, LoRALinear) and (config.init_lora_weights == "pissa"
                                              or any(s.pissa_init is not None for s in layer.adapters.values())):
            raise ValueError(f"layer {n!r}: a PiSSA adapter rewrites the frozen weight, so it must be the only "
                             "adapter on its layers")
    rng = np.random.default_rng(config.seed)
    first = not lora_layers(model)
    for n in targets:
        layer = model.get_submodule(n)
        if not isinstance(layer, LoRALinear):
            layer = LoRALinear(layer)
            model.set_submodule(n, layer)
        layer.add_adapter(adapter_name, config, rng)
    if first:
        set_adapter(model, adapter_name)
    return model


def apply_lora(model: Module, config: LoraConfig, adapter_name: str = "default") -> Module:
    """Add LoRA to ``model`` in place and make it the one trainable thing (PEFT's get_peft_model).

    Freezes every parameter, injects ``adapter_name`` into the targeted Linear layers, makes it
    active, and unfreezes its A and B (and the biases ``config.bias`` asks for). Returns ``model``.
    """
    add_adapter(model, adapter_name, config)
    set_adapter(model, adapter_name)
    return model


def set_adapter(model: Module, adapter_name: str) -> None:
    """Make ``adapter_name`` active (and the only trainable adapter) in every layer that has it."""
    layers = lora_layers(model)
    if not any(adapter_name in layer.adapters for _, layer in layers):
        known = sorted({a for _, layer in layers for a in layer.adapters})
        raise ValueError(f"no adapter named {adapter_name!r}; the model has {known}")
    merged = [n for n, layer in layers if layer.merged]
    if merged:
        raise ValueError(f"cannot switch adapters while merged ({merged[0]!r}); call unmerge_lora(model) first")
    for _, layer in layers:
        layer.active_adapter = adapter_name if adapter_name in layer.adapters else None
    config = next(layer.adapters[adapter_name].config for _, layer in layers if adapter_name in layer.adapters)
    mark_only_lora_as_trainable(model, bias=config.bias)


def delete_adapter(model: Module, adapter_name: str) -> None:
    """Remove ``adapter_name`` from every layer (layers left with no adapter stay wrapped)."""
    for _, layer in lora_layers(model):
        if adapter_name in layer.adapters:
            if layer.merged_adapter == adapter_name:
                raise ValueError(f"adapter {adapter_name!r} is merged; call unmerge_lora(model) first")
            del layer.lora_A[adapter_name], layer.lora_B[adapter_name]
            if adapter_name in layer.lora_magnitude:
                del layer.lora_magnitude[adapter_name]
            del layer.adapters[adapter_name]
            if layer.active_adapter == adapter_name:
                layer.active_adapter = None


def mark_only_lora_as_trainable(model: Module, bias: str = "none") -> None:
    """Freeze everything except the active adapters' A, B (and magnitudes), plus biases per ``bias``."""
    if bias not in _BIAS_CHOICES:
        raise ValueError(f"bias must be one of {_BIAS_CHOICES}, got {bias!r}")
    for name, p in model.named_parameters():
        p.requires_grad = bias == "all" and name.endswith(".bias")
    for _, layer in lora_layers(model):
        name = layer.active_adapter
        if name is None:
            continue
        for slots in (layer.lora_A, layer.lora_B, layer.lora_magnitude):
            if name in slots:
                slots[name].requires_grad = True
        if bias == "lora_only" and layer.base_layer.bias is not None:
            layer.base_layer.bias.requires_grad = True


@contextlib.contextmanager
def disable_adapters(model: Module):
    """Within the block the model computes with its base weights only (unmerged models)."""
    layers = [layer for _, layer in lora_layers(model)]
    if any(layer.merged for layer in layers):
        raise ValueError("disable_adapters() needs an unmerged model; call unmerge_lora(model) first")
    previous = [layer.disabled for layer in layers]
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer, was in zip(layers, previous):
            layer.disabled = was


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
    """Merge the active adapter and replace each LoRALinear by its plain Linear; returns the model."""
    for name, layer in lora_layers(model):
        if not layer.merged and not layer.disabled:
            layer.merge()
        model.set_submodule(name, layer.base_layer)
    return model


def unload(model: Module) -> Module:
    """Remove every adapter without merging: back to the base model (PiSSA: W0 restored)."""
    unmerge_lora(model)
    for name, layer in lora_layers(model):
        for state in layer.adapters.values():
            if state.pissa_init is not None:
                A0, B0 = state.pissa_init
                layer.base_layer.weight.data = layer.base_layer.weight.data + (B0 @ A0) * state.config.scaling
        model.set_submodule(name, layer.base_layer)
    return model


# ---- parameter accounting -----------------------------------------------------------------
def count_parameters(model: Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; total includes the adapters, as PEFT counts."""
    params = list(model.parameters())
    return sum(p.size for p in params if p.requires_grad), sum(p.size for p in params)


def print_trainable_parameters(model: Module) -> None:
    """Print PEFT's line: ``trainable params: X || all params: Y || trainable%: Z``."""
    trainable, total = count_parameters(model)
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")


def lora_plus_param_groups(model: Module, lr: float, ratio: float = 16.0, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer groups for LoRA+: B's learning rate is ``ratio × lr``; everything else trainable gets ``lr``."""
    if not lr > 0 or not ratio > 0:
        raise ValueError(f"lr and ratio must be > 0, got lr={lr!r}, ratio={ratio!r}")
    b_ids = {id(layer.lora_B[layer.active_adapter]) for _, layer in lora_layers(model) if layer.active_adapter}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if id(p) not in b_ids], "lr": lr, "weight_decay": weight_decay},
            {"params": [p for p in trainable if id(p) in b_ids], "lr": lr * ratio, "weight_decay": weight_decay}]


# ---- saving, loading, swapping ------------------------------------------------------------
def _adapter_arrays(model: Module, adapter_name: str) -> dict:
    arrays = {}
    for name, layer in lora_layers(model):
        if adapter_name in layer.adapters:
            arrays[f"{name}.lora_A"] = asnumpy(layer.lora_A[adapter_name].data)
            arrays[f"{name}.lora_B"] = asnumpy(layer.lora_B[adapter_name].data)
            if adapter_name in layer.lora_magnitude:
                arrays[f"{name}.lora_magnitude"] = asnumpy(layer.lora_magnitude[adapter_name].data)
    return arrays


def save_adapter(model: Module, directory, adapter_name: str = "default") -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (adapter weights only, host
    NumPy) into ``directory``, atomically, with a fingerprint of the adapted layers' base shapes."""
    layers = [(n, layer) for n, layer in lora_layers(model) if adapter_name in layer.adapters]
    if not layers:
        known = sorted({a for _, layer in lora_layers(model) for a in layer.adapters})
        raise ValueError(f"the model has no adapter named {adapter_name!r}; it has {known}")
    if any(layer.merged_adapter == adapter_name for _, layer in layers):
        raise ValueError(f"adapter {adapter_name!r} is merged; call unmerge_lora(model) before saving it")
    config = layers[0][1].adapters[adapter_name].config
    fingerprint = {n: [layer.out_features, layer.in_features] for n, layer in layers}
    os.makedirs(directory, exist_ok=True)
    save_safetensors(os.path.join(directory, ADAPTER_WEIGHTS_NAME), _adapter_arrays(model, adapter_name),
                     {"format": "tinylora-adapter", "adapter_name": adapter_name})
    with atomic_writer(os.path.join(directory, ADAPTER_CONFIG_NAME), "w") as f:
        json.dump({"lora_config": config.to_dict(), "base_layers": fingerprint, "format_version": 1}, f, indent=2)


def load_adapter(model: Module, directory, adapter_name: str = "default", activate: bool = True) -> Module:
    """Add the adapter saved in ``directory`` to ``model`` (which must have the same base shapes)."""
    config_path = os.path.join(directory, ADAPTER_CONFIG_NAME)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"no {ADAPTER_CONFIG_NAME} in {os.fspath(directory)!r}")
    try:
        with open(config_path) as f:
            saved = json.load(f)
        config, fingerprint = LoraConfig.from_dict(saved["lora_config"]), saved["base_layers"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{config_path!r} is truncated or corrupt: {err}") from None
    arrays, _ = load_safetensors(os.path.join(directory, ADAPTER_WEIGHTS_NAME))
    _check_fingerprint(model, fingerprint, config_path)
    _check_arrays(arrays, fingerprint, config)
    add_adapter(model, adapter_name, config)
    for name, layer in lora_layers(model):
        if name in fingerprint:
            for kind, slots in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B), ("lora_magnitude", layer.lora_magnitude)):
                if adapter_name in slots:
                    p = slots[adapter_name]
                    p.data = to_device(arrays[f"{name}.{kind}"].astype(p.dtype), p.device)
    if activate:
        set_adapter(model, adapter_name)
    return model


def _check_fingerprint(model: Module, fingerprint: dict, where: str) -> None:
    modules = dict(model.named_modules())
    for name, (out_f, in_f) in fingerprint.items():
        layer = modules.get(name)
        if not isinstance(layer, (Linear, LoRALinear)):
            raise ValueError(f"adapter {where!r} adapts layer {name!r}, which this model does not have as a Linear")
        if (layer.out_features, layer.in_features) != (out_f, in_f):
            raise ValueError(f"adapter {where!r} was trained on layer {name!r} of shape {out_f}x{in_f} (out x in), "
                             f"but this model's {name!r} is {layer.out_features}x{layer.in_features}")


def _check_arrays(arrays: dict, fingerprint: dict, config: LoraConfig) -> None:
    for name, (out_f, in_f) in fingerprint.items():
        expected = {"lora_A": (config.r, in_f), "lora_B": (out_f, config.r)}
        if config.use_dora:
            expected["lora_magnitude"] = (out_f,)
        for kind, shape in expected.items():
            got = arrays.get(f"{name}.{kind}")
            if got is None or tuple(got.shape) != shape:
                raise ValueError(f"adapter weights for {name}.{kind}: expected shape {shape}, "
                                 f"got {None if got is None else tuple(got.shape)}")


def get_delta_weights(model: Module, adapter_name: str | None = None) -> dict:
    """Layer name -> ΔW = s·B·A (host NumPy, (out, in)) of the (active) adapter; for analysis."""
    return {n: asnumpy(layer.delta_weight(adapter_name)) for n, layer in lora_layers(model)
            if (adapter_name or layer.active_adapter) in layer.adapters}
