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
import numbers
import os
import re
from dataclasses import asdict, dataclass

import numpy as np

from . import functional as F
from .backend import asnumpy, get_array_module, to_device
from .io import atomic_writer, load_safetensors, save_safetensors
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
    init_lora_weights: "gaussian" (A ~ N(0, 1/r²)), "kaiming"/True (A ~ U(±1/√in)), "pissa",
    or False (B random too: the adapter changes the output at once; for testing only).
    bias: which biases train: "none", "all", or "lora_only" (those of adapted layers).

    >>> LoraConfig(r=8, lora_alpha=16).scaling, LoraConfig(r=4, lora_alpha=8, use_rslora=True).scaling
    (2.0, 4.0)
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
        if isinstance(self.r, bool) or not isinstance(self.r, numbers.Integral):
            raise TypeError(f"LoraConfig.r must be an int, got {self.r!r} ({type(self.r).__name__})")
        if self.r <= 0:
            raise ValueError(f"LoraConfig.r must be a positive int, got {self.r!r}")
        if isinstance(self.lora_alpha, bool) or not isinstance(self.lora_alpha, numbers.Real) or not self.lora_alpha > 0:
            raise ValueError(f"LoraConfig.lora_alpha must be a number > 0, got {self.lora_alpha!r}")
        if isinstance(self.lora_dropout, bool) or not isinstance(self.lora_dropout, numbers.Real) \
                or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig.lora_dropout must be a number in [0, 1), got {self.lora_dropout!r}")
        self.r = int(self.r)
        self._check_target_modules()
        if not any(self.init_lora_weights is c if isinstance(c, bool) else self.init_lora_weights == c
                   for c in _INIT_CHOICES):  # `is` for True/False, so 1 and 0 are refused
            raise ValueError(f"LoraConfig.init_lora_weights must be one of {_INIT_CHOICES}, got {self.init_lora_weights!r}")
        if self.bias not in _BIAS_CHOICES:
            raise ValueError(f"LoraConfig.bias must be one of {_BIAS_CHOICES}, got {self.bias!r}")
        if self.use_dora and self.init_lora_weights == "pissa":
            raise ValueError("LoraConfig: use_dora=True cannot be combined with init_lora_weights='pissa'")

    def _check_target_modules(self):
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

    @property
    def scaling(self) -> float:
        """α / r, or α / √r with rsLoRA."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not isinstance(d["target_modules"], str):
            d["target_modules"] = list(d["target_modules"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LoraConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ---- one adapter, and the layer that holds them -------------------------------------------------
class LoraAdapter(Module):
    """One adapter on one layer: A (r, in), B (out, r), DoRA's magnitude m (out,) or None, a dropout.

    PiSSA adapters also keep their starting factors ``pissa_init = (A0, B0)`` (host float64, not
    parameters) so that W0 = W_res + s·B0·A0 can be recovered when disabled, deleted or unloaded.
    """

    def __init__(self, config: LoraConfig, A, B, magnitude=None, pissa_init=None):
        super().__init__()
        self.config, self.scaling, self.pissa_init = config, config.scaling, pissa_init
        self.lora_A = Parameter(A)                                    # (r, in)
        self.lora_B = Parameter(B)                                    # (out, r)
        self.lora_magnitude = None if magnitude is None else Parameter(magnitude)  # (out,)
        self.dropout = Dropout(config.lora_dropout, seed=config.seed)

    def extra_repr(self):
        r, in_f = self.lora_A.shape
        dora = self.lora_magnitude is not None
        return f"r={r}, in={in_f}, out={self.lora_B.shape[0]}, scaling={self.scaling:g}, dora={dora}"


class _AdapterDict(Module):
    """Adapters by name, ``layer.adapters["default"]``; registered as sub-modules so .to()/.eval() reach them."""

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


class LoRALinear(Module):
    """A frozen ``Linear`` plus one or more adapters; one adapter is active at a time.

    Shapes (paper notation): W0 (out, in), A (r, in), B (out, r), x (..., in) -> (..., out).

    >>> layer = LoRALinear(Linear(4, 3, rng=np.random.default_rng(0)))
    >>> layer.add_adapter("default", LoraConfig(r=2, lora_alpha=4), np.random.default_rng(0))
    >>> layer.active_adapter = "default"
    >>> x = np.ones((5, 4), dtype=np.float32)
    >>> bool((layer(x).data == layer.base_layer(x).data).all())   # B = 0: nothing changes yet
    True
    """

    def __init__(self, base_layer: Linear):
        super().__init__()
        if not isinstance(base_layer, Linear):
            raise TypeError(f"LoRALinear wraps a Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.adapters = _AdapterDict()
        self.active_adapter: str | None = None
        self.merged_adapter: str | None = None
        self.disabled = False
        base_layer.requires_grad_(False)

    in_features = property(lambda self: self.base_layer.in_features)
    out_features = property(lambda self: self.base_layer.out_features)
    merged = property(lambda self: self.merged_adapter is not None)

    def extra_repr(self):
        return f"active={self.active_adapter!r}, merged={self.merged}"

    def add_adapter(self, name: str, config: LoraConfig, rng: np.random.Generator) -> None:
        """Create adapter ``name``: A, B drawn on the host, then put on W0's device with W0's dtype."""
        W0 = self.base_layer.weight
        out_f, in_f = W0.shape
        r, device = config.r, W0.device
        if config.init_lora_weights in ("kaiming", True):
            A = rng.uniform(-1 / math.sqrt(in_f), 1 / math.sqrt(in_f), size=(r, in_f))   # (r, in)
        else:
            A = rng.normal(0.0, 1.0 / r, size=(r, in_f))                                   # (r, in)
        B = rng.normal(0.0, 1.0 / r, size=(out_f, r)) if config.init_lora_weights is False else np.zeros((out_f, r))
        pissa_init = None
        if config.init_lora_weights == "pissa":
            A, B, residual = _pissa_factors(asnumpy(W0.data), r, config.scaling)
            W0.data = to_device(residual.astype(W0.dtype), device)                          # (out, in) frozen residual
            pissa_init = (A, B)
        A, B = (to_device(a.astype(W0.dtype), device) for a in (A, B))
        magnitude = _row_norm(W0.data + (B @ A) * config.scaling) if config.use_dora else None  # (out,)
        self.adapters[name] = LoraAdapter(config, A, B, magnitude, pissa_init)

    # ---- the math ---------------------------------------------------------------------------
    def forward(self, x) -> Tensor:
        if self.disabled or self.merged or self.active_adapter is None:
            return self._base_forward(x)  # merged: the base weight already holds the update
        a = self.adapters[self.active_adapter]
        if a.lora_magnitude is None and (a.dropout.p == 0 or not self.training):  # the common case: one fused op
            W0 = self.base_layer
            return F.lora_linear(x, W0.weight, W0.bias, a.lora_A, a.lora_B, a.scaling)  # (..., out)
        h = F.linear(F.linear(a.dropout(x), a.lora_A) * a.scaling, a.lora_B)   # (..., r) -> (..., out)
        # (scaling is applied to the thin (..., r) tensor: r/out of the work of scaling the output)
        if a.lora_magnitude is None:
            return self.base_layer(x) + h                                        # (..., out)
        return self._dora_forward(x, h, a)

    def _dora_forward(self, x, lora_out: Tensor, a: LoraAdapter) -> Tensor:
        """m / ‖W0 + sBA‖ · (W0·x + sBA·x) + bias, the norm held constant (no gradient through it)."""
        W0, bias = self.base_layer.weight, self.base_layer.bias
        norm = _row_norm(W0.data + (a.lora_B.data @ a.lora_A.data) * a.scaling)  # (out,) a plain array
        out = (F.linear(x, W0) + lora_out) * (a.lora_magnitude / norm)           # (..., out)
        return out if bias is None else out + bias

    def _base_forward(self, x) -> Tensor:
        """W0·x + bias. Under PiSSA the stored weight is the residual, so s·B0·A0·x is added back."""
        out = self.base_layer(x)                                                 # (..., out)
        pissa = self._pissa_adapter()
        if pissa is None or self.merged:
            return out
        W = self.base_layer.weight
        A0, B0 = (Tensor(to_device(f.astype(W.dtype), W.device)) for f in pissa.pissa_init)
        return out + F.linear(F.linear(x, A0), B0) * pissa.scaling

    def _pissa_adapter(self) -> LoraAdapter | None:
        return next((a for a in self.adapters.values() if a.pissa_init is not None), None)

    def delta_weight(self, name: str | None = None):
        """The change the adapter makes to W0, (out, in): s·B·A (DoRA: W_merged − W0; PiSSA: s·(B·A − B0·A0))."""
        a = self.adapters[name or self.active_adapter]
        W0 = self.base_layer.weight.data
        delta = (a.lora_B.data @ a.lora_A.data) * a.scaling                      # (out, in)
        if a.pissa_init is not None:
            A0, B0 = a.pissa_init
            delta = delta - to_device((a.scaling * (B0 @ A0)).astype(W0.dtype), self.base_layer.weight.device)
        if a.lora_magnitude is not None:
            W = W0 + delta
            delta = W * (a.lora_magnitude.data / _row_norm(W))[:, None] - W0
        return delta

    # ---- merge / unmerge ----------------------------------------------------------------------
    def merge(self) -> None:
        """W0 ← W0 + s·B·A for the active adapter (DoRA: rows then rescaled to m). Never implicit."""
        if self.merged:
            raise ValueError(f"this LoRALinear is already merged (adapter {self.merged_adapter!r}); unmerge first")
        if self.disabled:
            raise ValueError("cannot merge inside disable_adapters(); leave the block first")
        if self.active_adapter is None:
            return
        a = self.adapters[self.active_adapter]
        W = self.base_layer.weight.data + (a.lora_B.data @ a.lora_A.data) * a.scaling  # (out, in)
        if a.lora_magnitude is not None:
            self._merge_norm = _row_norm(W)                                  # (out,) kept for unmerge
            W = W * (a.lora_magnitude.data / self._merge_norm)[:, None]
        self.base_layer.weight.data = W
        self.merged_adapter = self.active_adapter

    def unmerge(self) -> None:
        """Undo ``merge``: W0 ← W − s·B·A (DoRA: first undo the row rescaling)."""
        if not self.merged:
            raise ValueError("this LoRALinear is not merged")
        a = self.adapters[self.merged_adapter]
        W = self.base_layer.weight.data
        if a.lora_magnitude is not None:
            W = W * (self._merge_norm / a.lora_magnitude.data)[:, None]
        self.base_layer.weight.data = W - (a.lora_B.data @ a.lora_A.data) * a.scaling
        self.merged_adapter = None

    def delete_adapter(self, name: str) -> None:
        """Remove adapter ``name`` (PiSSA: the frozen weight gets W0 back)."""
        if self.merged_adapter == name:
            raise ValueError(f"adapter {name!r} is merged; call unmerge_lora(model) first")
        a = self.adapters[name]
        if a.pissa_init is not None:
            A0, B0 = a.pissa_init
            W = self.base_layer.weight
            W.data = to_device((asnumpy(W.data) + a.scaling * (B0 @ A0)).astype(W.dtype), W.device)
        del self.adapters[name]
        if self.active_adapter == name:
            self.active_adapter = None


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
def lora_layers(model: Module) -> list[tuple[str, LoRALinear]]:
    """(name, LoRALinear) for every adapted layer of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def _linear_names(model: Module) -> list[str]:
    """Names of the Linear layers LoRA could adapt (a LoRALinear counts; the Linear inside it does not)."""
    return [n for n, m in model.named_modules()
            if isinstance(m, LoRALinear) or (isinstance(m, Linear) and not n.endswith(".base_layer"))]


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
        raise ValueError(f"target_modules {config.target_modules!r} matched no Linear layer of this "
                         f"{type(model).__name__}. Valid names are the suffixes {suffixes}, any full name such as "
                         f"{names[0]!r}, a regex over full names, or 'all-linear'")
    for n in targets:
        layer = model.get_submodule(n)
        out_f, in_f = layer.out_features, layer.in_features
        if config.r > min(in_f, out_f):
            raise ValueError(f"r={config.r} is larger than min(in, out) = {min(in_f, out_f)} of layer {n!r} "
                             f"(out x in = {out_f}x{in_f}); a rank cannot exceed the matrix's smaller side")
    return targets


def _check_can_add(model: Module, targets: list[str], adapter_name: str, config: LoraConfig) -> None:
    for n in targets:
        layer = model.get_submodule(n)
        if not isinstance(layer, LoRALinear):
            continue
        if adapter_name in layer.adapters:
            raise ValueError(f"layer {n!r} already has an adapter named {adapter_name!r}; choose another "
                             "adapter_name, or call delete_adapter(model, name) first")
        if layer.merged:
            raise ValueError(f"layer {n!r} is merged; call unmerge_lora(model) before adding adapters")
        if config.init_lora_weights == "pissa" or layer._pissa_adapter() is not None:
            raise ValueError(f"layer {n!r}: a PiSSA adapter rewrites the frozen weight, so it must be the only "
                             "adapter on its layers")


def add_adapter(model: Module, adapter_name: str, config: LoraConfig) -> Module:
    """Inject adapter ``adapter_name`` into the layers ``config`` targets; returns ``model``.

    The active adapter stays active (a model's first adapter becomes active), and only the active
    adapter trains. Everything is validated before anything changes.
    """
    return _inject(model, adapter_name, config, None)


def _inject(model: Module, adapter_name: str, config: LoraConfig, targets: list[str] | None) -> Module:
    if not isinstance(config, LoraConfig):
        raise TypeError(f"config must be a LoraConfig, got {type(config).__name__}")
    if not isinstance(adapter_name, str) or not adapter_name.isidentifier():
        raise ValueError(f"adapter_name must be a Python identifier such as 'default', got {adapter_name!r}")
    targets = _find_targets(model, config) if targets is None else targets
    _check_can_add(model, targets, adapter_name, config)
    active = active_adapter(model) or adapter_name
    rng = np.random.default_rng(config.seed)
    for n in targets:
        layer = model.get_submodule(n)
        if not isinstance(layer, LoRALinear):
            layer = LoRALinear(layer)
            model.set_submodule(n, layer)
        layer.add_adapter(adapter_name, config, rng)
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
        raise ValueError(f"cannot switch adapters while merged ({merged[0]!r}); call unmerge_lora(model) first")
    for _, layer in layers:
        layer.active_adapter = adapter_name if adapter_name in layer.adapters else None
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


def mark_only_lora_as_trainable(model: Module, bias: str = "none") -> None:
    """Freeze everything except the active adapters' A, B (and magnitudes), plus biases per ``bias``."""
    if bias not in _BIAS_CHOICES:
        raise ValueError(f"bias must be one of {_BIAS_CHOICES}, got {bias!r}")
    for name, p in model.named_parameters():
        p.requires_grad = bias == "all" and name.endswith(".bias")
    for _, layer in lora_layers(model):
        if layer.active_adapter is not None:
            layer.adapters[layer.active_adapter].requires_grad_(True)
        if bias == "lora_only" and layer.base_layer.bias is not None:
            layer.base_layer.bias.requires_grad = True


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
    """Merge the active adapter and put each plain Linear back in place of its LoRALinear.

    Returns ``model`` itself (still a GPT), with the adapted weights and no adapters left.
    """
    for name, layer in lora_layers(model):
        if not layer.merged:
            layer.merge()
        model.set_submodule(name, layer.base_layer)
    return model


def unload(model: Module) -> Module:
    """Remove every adapter without merging: back to the base model (PiSSA: W0 restored)."""
    unmerge_lora(model)
    for name, layer in lora_layers(model):
        for adapter_name in list(layer.adapters):
            layer.delete_adapter(adapter_name)
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
    """Optimizer groups for LoRA+: the B matrices get ``ratio × lr``; every other trainable parameter ``lr``.

    >>> from tinylora.models import GPT, GPTConfig
    >>> groups = lora_plus_param_groups(apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=2)), lr=1e-3)
    >>> [(len(g["params"]), g["lr"]) for g in groups]
    [(4, 0.001), (4, 0.016)]
    """
    if not lr > 0 or not ratio > 0:
        raise ValueError(f"lr and ratio must be > 0, got lr={lr!r}, ratio={ratio!r}")
    b_ids = {id(layer.adapters[layer.active_adapter].lora_B) for _, layer in lora_layers(model) if layer.active_adapter}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in b_ids], "lr": lr, "weight_decay": weight_decay},
              {"params": [p for p in trainable if id(p) in b_ids], "lr": lr * ratio, "weight_decay": weight_decay}]
    return [g for g in groups if g["params"]]


# ---- saving, loading, swapping ------------------------------------------------------------
def _adapter_arrays(layers, adapter_name: str) -> dict:
    """``{layer.lora_A: host array, layer.lora_B: ..., [layer.lora_magnitude: ...]}`` of one adapter."""
    arrays = {}
    for name, layer in layers:
        a = layer.adapters[adapter_name]
        arrays[f"{name}.lora_A"] = asnumpy(a.lora_A.data)
        arrays[f"{name}.lora_B"] = asnumpy(a.lora_B.data)
        if a.lora_magnitude is not None:
            arrays[f"{name}.lora_magnitude"] = asnumpy(a.lora_magnitude.data)
    return arrays


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
        json.dump({"lora_config": config.to_dict(), "base_layers": base_layers, "format_version": 1}, f, indent=2)


def load_adapter(model: Module, directory, adapter_name: str = "default", activate: bool = True) -> Module:
    """Add the adapter saved in ``directory`` to ``model``, which must have the same base shapes.

    Every check (files, layer names, shapes) runs before the model changes.
    """
    config, base_layers = _read_adapter_config(os.path.join(directory, ADAPTER_CONFIG_NAME))
    arrays, _ = load_safetensors(os.path.join(directory, ADAPTER_WEIGHTS_NAME))
    targets = _find_targets(model, config)
    _check_base_layers(model, targets, base_layers, directory)
    _check_arrays(arrays, base_layers, config)
    _inject(model, adapter_name, config, targets)
    for name in targets:
        a = model.get_submodule(name).adapters[adapter_name]
        for kind in ("lora_A", "lora_B", "lora_magnitude"):
            p = getattr(a, kind)
            if p is not None:
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
        raise ValueError(f"{where} does not fit this model: layers the adapter has but the model lacks: {missing}; "
                         f"targeted layers of the model the adapter lacks: {extra}")
    for name in targets:
        layer, (out_f, in_f) = model.get_submodule(name), base_layers[name]
        if (layer.out_features, layer.in_features) != (out_f, in_f):
            raise ValueError(f"{where} was trained on layer {name!r} of shape (out, in) = ({out_f}, {in_f}), "
                             f"but this model's {name!r} is ({layer.out_features}, {layer.in_features})")


def _check_arrays(arrays: dict, base_layers: dict, config: LoraConfig) -> None:
    for name, (out_f, in_f) in base_layers.items():
        expected = {"lora_A": (config.r, in_f), "lora_B": (out_f, config.r)}
        if config.use_dora:
            expected["lora_magnitude"] = (out_f,)
        for kind, shape in expected.items():
            got = arrays.get(f"{name}.{kind}")
            if got is None or tuple(got.shape) != shape:
                raise ValueError(f"adapter weights for {name}.{kind}: expected shape {shape}, "
                                 f"got {None if got is None else tuple(got.shape)}")


def get_delta_weights(model: Module, adapter_name: str | None = None) -> dict:
    """Layer name -> ΔW (host NumPy, (out, in)) of ``adapter_name`` (default: the active one); for analysis."""
    return {n: asnumpy(layer.delta_weight(adapter_name)) for n, layer in lora_layers(model)
            if (adapter_name or layer.active_adapter) in layer.adapters}
