"""Per-layer settings: ``rank_pattern``, ``alpha_pattern`` and ``layers_to_transform``, PEFT's rules.

- ``rank_pattern`` / ``alpha_pattern``: {key: r} and {key: α}. A layer named ``name`` takes the value of the
  first key for which ``re.match(rf"(.*\\.)?({key})$", name)`` succeeds: a key is a name suffix at a dot
  boundary (``"q_proj"``, ``"layers.0.self_attn.q_proj"``) or a regex over such a suffix
  (``"layers\\.[01]\\..*"``).
  Other layers keep ``r`` and ``lora_alpha``. The scaling is α/r (α/√r with rsLoRA) with the layer's own r, α.
- ``layers_to_transform``: an index or a list of indices; only targets inside those blocks are adapted. The
  index is the number after ``layers_pattern`` (``"blocks"`` in ``blocks.3.attn.q_proj``), or, without one,
  the first number that follows a named segment: ``model.layers.3.self_attn.q_proj`` -> 3 (PEFT's rule),
  and ``blocks.3.attn.q_proj`` -> 3 (PEFT's default needs a segment before ``layers``; tinylora's GPT keeps
  its blocks at the top, so a first-level ``name.N.`` counts too).

>>> pattern_key(["q_proj", r"layers\\.0\\..*"], "model.layers.0.self_attn.q_proj")
'q_proj'
>>> pattern_key(["k_proj"], "model.layers.0.self_attn.q_proj") is None
True
>>> layer_index("model.layers.3.self_attn.q_proj"), layer_index("blocks.1.attn.v_proj", "blocks")
(3, 1)
"""
from __future__ import annotations

import re
from dataclasses import replace

from ..nn import Module


def pattern_key(keys, name: str) -> str | None:
    """The first key of ``keys`` that matches ``name`` by PEFT's rule (a suffix at a dot), or None."""
    return next((key for key in keys if re.match(rf"(.*\.)?({key})$", name)), None)


def layer_index(name: str, layers_pattern=None) -> int | None:
    """The block index of module ``name`` (the number after ``layers_pattern``), or None when it has none."""
    patterns = [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern
    if not patterns:
        match = re.match(r"(?:^|.*?\.)[^.]*\.(?P<idx>\d+)\.", name)
        return None if match is None else int(match["idx"])
    for pattern in patterns:
        match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", name)
        if match is not None:
            return int(match["idx"])
    return None


def layer_settings(config, name: str) -> tuple[int, float]:
    """(r, lora_alpha) of layer ``name``: its rank_pattern / alpha_pattern entries, else the defaults."""
    r_key, alpha_key = pattern_key(config.rank_pattern, name), pattern_key(config.alpha_pattern, name)
    return (config.r if r_key is None else config.rank_pattern[r_key],
            config.lora_alpha if alpha_key is None else config.alpha_pattern[alpha_key])


def config_for_layer(config, name: str):
    """The LoraConfig one layer's adapter uses: ``config`` with that layer's r and lora_alpha."""
    r, alpha = layer_settings(config, name)
    return config if (r, alpha) == (config.r, config.lora_alpha) else replace(config, r=r, lora_alpha=alpha)


def select_layers(model: Module, targets: list[str], config, shape_of) -> list[str]:
    """The targets inside ``layers_to_transform``, each checked against its own rank; ``shape_of(layer)``
    gives (out, in). Every pattern key must match a target and every index must exist, else a ValueError."""
    if config.layers_to_transform is not None:
        wanted = config.layers_to_transform
        wanted = [wanted] if isinstance(wanted, int) else list(wanted)
        index = {n: layer_index(n, config.layers_pattern) for n in targets}
        found = sorted({i for i in index.values() if i is not None})
        if not found:
            raise ValueError(f"layers_to_transform={config.layers_to_transform!r}: no target has a block "
                             f"index under layers_pattern={config.layers_pattern!r} (targets such as "
                             f"{targets[0]!r}); set layers_pattern to the name before the index")
        missing = [i for i in wanted if i not in found]
        if missing:
            raise ValueError(f"layers_to_transform={config.layers_to_transform!r}: this "
                             f"{type(model).__name__} has no block {missing} among its targets; the "
                             f"indices are {found[0]}..{found[-1]}")
        targets = [n for n in targets if index[n] in wanted]
    for field in ("rank_pattern", "alpha_pattern"):
        unused = [key for key in getattr(config, field) if not any(pattern_key([key], n) for n in targets)]
        if unused:
            raise ValueError(f"{field} key {unused[0]!r} matches none of the adapted layers (such as "
                             f"{targets[0]!r}); a key is a name suffix or a regex over one")
    for n in targets:
        r, (out_f, in_f) = layer_settings(config, n)[0], shape_of(model.get_submodule(n))
        if r > min(in_f, out_f):
            key = pattern_key(config.rank_pattern, n)
            source = "" if key is None else f" (rank_pattern[{key!r}])"
            raise ValueError(f"r={r}{source} is larger than min(in, out) = {min(in_f, out_f)} of layer {n!r} "
                             f"(out x in = {out_f}x{in_f}); a rank cannot exceed the matrix's smaller side")
    return targets


def check_layer_fields(config) -> None:
    """Type and value checks of a LoraConfig's per-layer fields (run by ``LoraConfig`` when it is made)."""
    for field, kind in (("rank_pattern", "an int >= 1"), ("alpha_pattern", "a number > 0")):
        pattern = getattr(config, field)
        if not isinstance(pattern, dict):
            raise TypeError(f"LoraConfig.{field} must be a dict {{name or regex: value}}, got {pattern!r}")
        for key, value in pattern.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"LoraConfig.{field} keys must be non-empty strings, got {key!r}")
            try:
                re.compile(key)
            except re.error as err:
                raise ValueError(f"LoraConfig.{field} key {key!r} is not a valid regex: {err}") from None
            ok = (isinstance(value, int) and value >= 1) if field == "rank_pattern" \
                else isinstance(value, (int, float)) and value > 0
            if isinstance(value, bool) or not ok:
                raise ValueError(f"LoraConfig.{field}[{key!r}] must be {kind}, got {value!r}")
    layers = config.layers_to_transform
    if layers is not None:
        indices = [layers] if isinstance(layers, int) and not isinstance(layers, bool) else layers
        if not isinstance(indices, (list, tuple)) or not indices \
                or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in indices):
            raise TypeError("LoraConfig.layers_to_transform must be an int >= 0 or a non-empty list of them, "
                            f"got {layers!r}")
        if isinstance(config.target_modules, str) and config.target_modules != "all-linear":
            raise ValueError("LoraConfig.layers_to_transform cannot be used with a regex target_modules "
                             f"({config.target_modules!r}): put the block indices in the regex instead")
    pattern = config.layers_pattern
    if pattern is not None:
        names = [pattern] if isinstance(pattern, str) else pattern
        if not isinstance(names, (list, tuple)) or not names \
                or not all(isinstance(n, str) and n for n in names):
            raise TypeError(f"LoraConfig.layers_pattern must be a name or a list of names, got {pattern!r}")
        if layers is None:
            raise ValueError(f"LoraConfig.layers_pattern={pattern!r} needs layers_to_transform too")
