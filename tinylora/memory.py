"""Where a fine-tuning run's memory goes: frozen weights, trainable parameters, gradients, optimizer state,
and (measured) activations.

The first four are counted from the arrays themselves: a float32 (out, in) weight is ``out * in * 4``
bytes; a 4-bit NF4 one (tinylora/nf4.py) ``out * in / 2`` of codes plus 4 bytes per block of scales
(Q4_1: 20 bytes per 32 values, Q8_0: 34);
each trainable parameter gets one gradient of its own size; AdamW keeps two more (m and v). The
activations are measured: with ``batch=(x, y)``, one forward and backward runs under ``tracemalloc``
(NumPy reports its allocations to it), and the peak it allocates beyond the new gradients is what the
saved graph, the logits and the temporaries cost. Device (CuPy) arrays are not seen by tracemalloc.

>>> import numpy as np
>>> from tinylora.nn import Linear
>>> report = memory_report(Linear(64, 32, bias=False).requires_grad_(False), verbose=False)
>>> report.frozen_bytes          # 32 * 64 * 4
8192
"""
from __future__ import annotations

import dataclasses
import tracemalloc

from .block_weight import BlockWeight
from .module import Module

__all__ = ["MemoryReport", "memory_report", "frozen_4bit_weights"]

MiB = 1024 * 1024


@dataclasses.dataclass
class MemoryReport:
    """Bytes by kind; ``total`` is their sum. ``activation_bytes`` is None unless a batch was measured."""

    frozen_bytes: int            # frozen float parameters (float32: 4 bytes a value)
    frozen_4bit_bytes: int       # frozen block-quantized weights (NF4, Q4_1, Q8_0): codes + scales
    trainable_bytes: int         # parameters that train (LoRA: the adapters)
    gradient_bytes: int          # one gradient per trainable parameter
    optimizer_bytes: int         # the optimizer's state arrays (AdamW: m and v), 0 before its first step
    activation_bytes: int | None  # measured: one forward + backward's peak beyond the new gradients
    trainable_params: int = 0
    frozen_params: int = 0

    @property
    def total(self) -> int:
        return (self.frozen_bytes + self.frozen_4bit_bytes + self.trainable_bytes + self.gradient_bytes
                + self.optimizer_bytes + (self.activation_bytes or 0))

    def rows(self) -> list[tuple[str, int | None]]:
        return [("frozen weights, float", self.frozen_bytes),
                ("frozen weights, quantized (codes + scales)", self.frozen_4bit_bytes),
                (f"trainable parameters ({self.trainable_params:,d} values)", self.trainable_bytes),
                ("gradients", self.gradient_bytes),
                ("optimizer state", self.optimizer_bytes),
                ("activations, one forward + backward (measured)", self.activation_bytes),
                ("total", self.total)]

    def table(self) -> str:
        lines = [f"{'memory':<48} {'bytes':>14} {'MiB':>9}"]
        for name, n in self.rows():
            lines.append(f"{name:<48} {'not measured':>14} {'':>9}" if n is None
                         else f"{name:<48} {n:>14,d} {n / MiB:>9.1f}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def frozen_4bit_weights(model: Module) -> list[BlockWeight]:
    """Every block-quantized weight (NF4, Q4_1, Q8_0) held by a layer of ``model``, once each (a tied
    table counts once)."""
    found = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, BlockWeight):
                found[id(value)] = value
    return list(found.values())


def _array_bytes(state) -> int:
    """Bytes of the arrays in an optimizer's ``state`` (a dict: parameter -> dict of arrays and counters)."""
    return sum(int(v.nbytes) for per_param in state.values() for v in per_param.values()
               if hasattr(v, "nbytes") and getattr(v, "ndim", 0) > 0)


def measure_activations(model: Module, batch) -> int:
    """Peak bytes NumPy allocates in one ``model(x, y)`` forward and ``loss.backward()``, less the gradients
    that backward creates. Gradients held before are put back afterwards, so nothing changes."""
    x, y = batch
    params = [p for p in model.parameters() if p.requires_grad]
    held = [p.grad for p in params]
    for p in params:
        p.grad = None
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        _, loss = model(x, y)
        loss.backward()
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        if not was_tracing:
            tracemalloc.stop()
        for p, g in zip(params, held):
            p.grad = g
    return max(0, peak - sum(int(p.data.nbytes) for p in params))


def memory_report(model: Module, optimizer=None, batch=None, verbose: bool = True) -> MemoryReport:
    """Count ``model``'s memory by kind (and ``optimizer``'s state); with ``batch=(x, y)``, measure the
    activations of one forward and backward too. Prints the table unless ``verbose=False``.

    Counted, never estimated: a quantized weight by its code and scale arrays, the optimizer by the arrays in
    its ``state``.
    """
    if not isinstance(model, Module):
        raise TypeError(f"memory_report: model must be a Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(getattr(optimizer, "state", None), dict):
        raise TypeError(f"memory_report: optimizer must have a .state dict (tinylora.optim), "
                        f"got {type(optimizer).__name__}")
    if batch is not None and not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"memory_report: batch must be a pair (x, y) of ids, got {type(batch).__name__}")
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    frozen = [p for p in params if not p.requires_grad]
    report = MemoryReport(
        frozen_bytes=sum(int(p.data.nbytes) for p in frozen),
        frozen_4bit_bytes=sum(w.nbytes for w in frozen_4bit_weights(model)),
        trainable_bytes=sum(int(p.data.nbytes) for p in trainable),
        gradient_bytes=sum(int(p.data.nbytes) for p in trainable),
        optimizer_bytes=_array_bytes(optimizer.state) if optimizer is not None else 0,
        activation_bytes=None if batch is None else measure_activations(model, batch),
        trainable_params=sum(p.size for p in trainable),
        frozen_params=sum(p.size for p in frozen) + sum(w.size for w in frozen_4bit_weights(model)))
    if verbose:
        print(report.table())
    return report
