"""``model(ids, adapter_names=[...])``: one adapter name (or None, the base) per row, for one forward call.

The models know nothing of LoRA. They set the names on every sub-module that can compute rows with
different adapters (one with a ``row_adapters`` attribute: tinylora.lora's LoraLinear; tinylora.lora.mixed
does the per-row math) and clear them when the call ends, also after an error. Every check runs first:
the names must be a list as long as the batch, each a name some layer's ``adapters`` holds, or None; the
adapted layers must be unmerged, and every layer that holds a named adapter must support per-row
adapters (LoRA on an Embedding and modules_to_save copies do not).
"""
from __future__ import annotations

import contextlib

from ..nn import Module


@contextlib.contextmanager
def adapters_per_row(model: Module, adapter_names, batch_size: int):
    """Within the block, row b of a batch of ``batch_size`` rows uses adapter ``adapter_names[b]``."""
    if adapter_names is None:
        yield
        return
    if not isinstance(adapter_names, (list, tuple)) \
            or not all(n is None or isinstance(n, str) for n in adapter_names):
        raise TypeError(f"adapter_names must be a list of adapter names (str) or None, one per row; got "
                        f"{adapter_names!r}")
    if len(adapter_names) != batch_size:
        raise ValueError(f"adapter_names has {len(adapter_names)} names for a batch of {batch_size} rows; "
                         "give one name (or None for the base model) per row")
    layers = [(n, m) for n, m in model.named_modules() if hasattr(m, "adapters")]
    known = sorted({name for _, m in layers for name in m.adapters})
    unknown = sorted({n for n in adapter_names if n is not None} - set(known))
    if unknown:
        raise ValueError(f"adapter_names holds {unknown[0]!r}, which is no adapter of this "
                         f"{type(model).__name__}; it has {known}")
    for name, m in layers:
        if getattr(m, "merged", False):
            raise ValueError(f"adapter_names needs an unmerged model ({name!r} is merged); call "
                             "unmerge_lora(model) first")
        if not hasattr(m, "row_adapters") and any(n in m.adapters for n in adapter_names if n):
            raise ValueError(f"layer {name!r} ({type(m).__name__}) cannot give rows different adapters; "
                             "mixed batches support adapters on Linear layers only")
    for name, m in model.named_modules():
        copies = getattr(m, "modules_to_save", None)
        if isinstance(copies, Module) and any(n in copies for n in adapter_names if n):
            raise ValueError(f"{name!r} is a modules_to_save copy of a named adapter; mixed batches do not "
                             "support modules_to_save")
    rows = [m for _, m in layers if hasattr(m, "row_adapters")]
    for m in rows:
        m.row_adapters = list(adapter_names)
    try:
        yield
    finally:
        for m in rows:
            m.row_adapters = None
