"""LoraConfig: what to adapt and how, checked when it is made (PEFT's names and defaults).

An adapter file's ``adapter_config.json`` is PEFT's: ``LoraConfig.to_peft_dict`` writes every key that
PEFT's ``LoraConfig.save_pretrained`` writes, and ``LoraConfig.from_peft_dict`` reads one back. PEFT
fields that tinylora does not implement are listed in ``PEFT_UNSUPPORTED_FIELDS`` with the value that
means "off"; ``check_peft_fields`` refuses a file that sets any of them to something else.

>>> d = LoraConfig(r=2, lora_alpha=4).to_peft_dict()
>>> d["peft_type"], d["r"], d["target_modules"], d["rank_pattern"]
('LORA', 2, ['q_proj', 'v_proj'], {})
>>> LoraConfig.from_peft_dict({**d, "layer_replication": [[0, 1]]})
Traceback (most recent call last):
...
ValueError: PEFT config: layer_replication=[[0, 1]] is not supported by tinylora (it needs None)
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .._validate import check_bool, check_choice, check_int, check_probability, check_real
from .patterns import check_layer_fields
from .variants import lora_scaling

INIT_CHOICES = ("gaussian", "kaiming", "pissa", True, False)
BIAS_CHOICES = ("none", "all", "lora_only")
TASK_TYPES = (None, "CAUSAL_LM")  # every tinylora model is a causal language model

# PEFT LoraConfig fields (peft 0.21) that tinylora does not implement, each with the value that turns it
# off. They are written at these values, and a file with another value is refused (check_peft_fields).
# Supporting one means moving it from here into LoraConfig.
PEFT_UNSUPPORTED_FIELDS = {
    "fan_in_fan_out": False, "exclude_modules": None, "target_parameters": None,
    "lora_bias": False, "layer_replication": None, "loftq_config": {}, "eva_config": None,
    "corda_config": None, "use_qalora": False, "megatron_config": None, "trainable_token_indices": None,
    "alora_invocation_tokens": None, "arrow_config": None, "ensure_weight_tying": False, "use_bdlora": None,
    "kasa_config": None, "lora_ga_config": None, "monteclora_config": None, "velora_config": None,
}
# PEFT fields that describe the file or matter only with an unsupported field on: read and not used.
PEFT_DESCRIPTIVE_FIELDS = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": None,
                           "revision": None, "inference_mode": True, "auto_mapping": None,
                           "megatron_core": "megatron.core", "qalora_group_size": 16, "peft_version": None}
PEFT_LORA_FIELDS = ("r", "lora_alpha", "target_modules", "lora_dropout", "use_rslora", "use_dora",
                    "init_lora_weights", "bias", "rank_pattern", "alpha_pattern", "layers_to_transform",
                    "layers_pattern", "modules_to_save")


def _is_off(value, off) -> bool:
    """True when ``value`` is the "off" value ``off`` (None, {} and [] all mean off for a None/{} field)."""
    if isinstance(value, bool) or isinstance(off, bool):
        return value is off
    return value == off or (off in (None, {}) and value in (None, {}, []))


def check_peft_fields(d: dict, where: str = "PEFT config") -> None:
    """Refuse a PEFT adapter config that turns on something tinylora does not implement, naming the field.

    Checked: ``peft_type`` is "LORA", ``task_type`` is None or "CAUSAL_LM", every field of
    ``PEFT_UNSUPPORTED_FIELDS`` is off, and a field unknown here (from a newer PEFT) is off (None, {}, [] or
    False). This is the one place that decides which PEFT fields tinylora accepts.
    """
    if d.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{where}: peft_type={d['peft_type']!r} is not supported by tinylora (only 'LORA')")
    if d.get("task_type") not in TASK_TYPES:
        raise ValueError(f"{where}: task_type={d['task_type']!r} is not supported by tinylora "
                         f"(it needs one of {list(TASK_TYPES)})")
    for key, value in d.items():
        if key in PEFT_UNSUPPORTED_FIELDS and not _is_off(value, PEFT_UNSUPPORTED_FIELDS[key]):
            raise ValueError(f"{where}: {key}={value!r} is not supported by tinylora "
                             f"(it needs {PEFT_UNSUPPORTED_FIELDS[key]!r})")
        known = key in PEFT_UNSUPPORTED_FIELDS or key in PEFT_DESCRIPTIVE_FIELDS or key in PEFT_LORA_FIELDS
        if not known and value not in (None, {}, [], False):
            raise ValueError(f"{where}: the field {key}={value!r} is unknown to tinylora; refusing an "
                             "adapter that may depend on it")
    init = d.get("init_lora_weights", True)
    if init not in INIT_CHOICES or isinstance(init, (int, float)) and not isinstance(init, bool):
        raise ValueError(f"{where}: init_lora_weights={init!r} is not supported by tinylora "
                         f"(it needs one of {list(INIT_CHOICES)})")


@dataclass
class LoraConfig:
    """What to adapt and how. Validated at creation.

    target_modules: module-name suffixes (``"q_proj"`` matches ``blocks.3.attn.q_proj``), a
    regex string matched against the full name, or ``"all-linear"`` (every Linear but lm_head).
    init_lora_weights: "gaussian" (A ~ N(0, 1/r²)), "kaiming"/True (A ~ U(±1/√in)), "pissa",
    or False (B random too: the adapter changes the output at once; for testing only).
    bias: which biases train: "none", "all", or "lora_only" (those of adapted layers).
    rank_pattern, alpha_pattern: per-layer r and α, {name suffix or regex: value} (lora/patterns.py).
    layers_to_transform, layers_pattern: adapt only the targets in these blocks (lora/patterns.py).
    modules_to_save: modules trained in full, a copy per adapter, e.g. ["lm_head"] (lora/modules_to_save.py).

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
    rank_pattern: dict = field(default_factory=dict)
    alpha_pattern: dict = field(default_factory=dict)
    layers_to_transform: int | list | None = None
    layers_pattern: str | list | None = None
    modules_to_save: list | None = None

    def __post_init__(self):
        self.r = check_int("LoraConfig.r", self.r, low=1)
        check_real("LoraConfig.lora_alpha", self.lora_alpha, low=0, low_inclusive=False)  # kept as given
        check_probability("LoraConfig.lora_dropout", self.lora_dropout)
        self._check_target_modules()
        check_choice("LoraConfig.init_lora_weights", self.init_lora_weights, INIT_CHOICES)
        if not isinstance(self.init_lora_weights, str):  # 1 == True, so check_choice alone lets 1 and 0 in
            check_bool("LoraConfig.init_lora_weights", self.init_lora_weights)
        check_choice("LoraConfig.bias", self.bias, BIAS_CHOICES)
        check_bool("LoraConfig.use_rslora", self.use_rslora)
        check_bool("LoraConfig.use_dora", self.use_dora)
        if self.seed is not None:
            self.seed = check_int("LoraConfig.seed", self.seed, low=0)
        if self.use_dora and self.init_lora_weights == "pissa":
            raise ValueError("LoraConfig: use_dora=True cannot be combined with init_lora_weights='pissa'")
        for name in ("layers_to_transform", "layers_pattern", "modules_to_save"):  # JSON writes lists
            if isinstance(getattr(self, name), tuple):
                setattr(self, name, list(getattr(self, name)))
        check_layer_fields(self)
        if self.modules_to_save is not None and not (isinstance(self.modules_to_save, list) and all(
                isinstance(m, str) and m for m in self.modules_to_save)):
            raise TypeError(f"LoraConfig.modules_to_save must be a list of module names, got "
                            f"{self.modules_to_save!r}")

    def _check_target_modules(self):
        if isinstance(self.target_modules, list):
            self.target_modules = tuple(self.target_modules)
        if isinstance(self.target_modules, str):
            try:
                re.compile(self.target_modules)
            except re.error as err:
                raise ValueError(f"LoraConfig.target_modules {self.target_modules!r} is not a valid regex: "
                                 f"{err}") from None
        elif not (isinstance(self.target_modules, tuple) and self.target_modules
                  and all(isinstance(t, str) and t for t in self.target_modules)):
            raise ValueError("LoraConfig.target_modules must be a non-empty list of names, a regex string "
                             f"or 'all-linear'; got {self.target_modules!r}")

    @property
    def scaling(self) -> float:
        """α / r, or α / √r with rsLoRA (``variants.lora_scaling``)."""
        return lora_scaling(self.lora_alpha, self.r, self.use_rslora)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not isinstance(d["target_modules"], str):
            d["target_modules"] = list(d["target_modules"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LoraConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_peft_dict(self, base_model_name_or_path: str | None = None) -> dict:
        """The ``adapter_config.json`` PEFT writes for this config: every key, in PEFT's sorted order.

        ``init_lora_weights="kaiming"`` is written as PEFT's True (the same A ~ U(±1/√in)); ``seed`` is not
        written (PEFT has no such field; it only matters when an adapter is created).
        """
        d = {**PEFT_UNSUPPORTED_FIELDS, **PEFT_DESCRIPTIVE_FIELDS}
        del d["peft_version"]  # tinylora is not PEFT; PEFT fills in its own version when it reads the file
        d["base_model_name_or_path"] = base_model_name_or_path
        d.update({k: getattr(self, k) for k in PEFT_LORA_FIELDS})
        d["init_lora_weights"] = True if self.init_lora_weights == "kaiming" else self.init_lora_weights
        if not isinstance(self.target_modules, str):
            d["target_modules"] = sorted(self.target_modules)
        return dict(sorted(d.items()))

    @classmethod
    def from_peft_dict(cls, d: dict, where: str = "PEFT config") -> "LoraConfig":
        """The LoraConfig of a PEFT ``adapter_config.json`` dict; a field tinylora lacks is refused by name
        (``check_peft_fields``). Missing keys take PEFT's defaults (r=8, lora_alpha=8, init True)."""
        if not isinstance(d, dict):
            raise TypeError(f"{where}: expected a JSON object, got {type(d).__name__}")
        check_peft_fields(d, where)
        if d.get("target_modules") is None:
            raise ValueError(f"{where}: target_modules is null (PEFT's per-model default); tinylora needs "
                             "the module names written out")
        peft_defaults = {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0, "use_rslora": False, "use_dora": False,
                         "init_lora_weights": True, "bias": "none", "rank_pattern": {}, "alpha_pattern": {}}
        d = {**d, **{k: {} for k in ("rank_pattern", "alpha_pattern") if d.get(k, {}) is None}}
        try:
            return cls(**{**peft_defaults, **{k: d[k] for k in PEFT_LORA_FIELDS if k in d}})
        except (TypeError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from None
