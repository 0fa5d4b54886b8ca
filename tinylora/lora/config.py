"""LoraConfig: what to adapt and how, checked when it is made (PEFT's names and defaults)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .._validate import check_bool, check_choice, check_int, check_probability, check_real
from .variants import lora_scaling

INIT_CHOICES = ("gaussian", "kaiming", "pissa", True, False)
BIAS_CHOICES = ("none", "all", "lora_only")


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
