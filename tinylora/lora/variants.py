"""LoRA's variants, each in one place: rsLoRA's scaling, DoRA and PiSSA.

- rsLoRA (Kalajdzievski, 2023, arXiv:2312.03732) changes one number, the scaling: α / √r instead of
  α / r (``lora_scaling``). It combines with every other variant.
- DoRA (Liu et al., 2024, arXiv:2402.09353): W = m · (W0 + s·B·A) / ‖W0 + s·B·A‖ row-wise, with the
  norm treated as a constant in backward, as the paper recommends (``DoraVariant``).
- PiSSA (Meng et al., 2024, arXiv:2404.02948): A, B from the top-r SVD of W0; the frozen weight
  becomes the residual W0 − s·B·A, so the output is unchanged at init (``PissaVariant``).

LoRA+ changes only the optimizer's learning rate for B, so it is ``lora_plus_param_groups`` in
``model.py``, beside the code that finds the adapted layers.

Every adapter holds one variant object. ``LoraVariant`` is plain LoRA, and DoRA and PiSSA override
only the hooks they change (as PEFT's ``LoraVariant`` does). ``LoraLinear`` calls the hooks at fixed
points, so the layer holds no check for any particular variant:

- ``shapes(r, out_features, in_features)``: the adapter's parameters and their shapes;
- ``init(layer, adapter)``: after A and B are drawn and put on W0's device;
- ``forward(layer, adapter, x)``: the output while the adapter is active and unmerged;
- ``base_forward(layer, adapter, x, out)``: the output when the layer computes without an update;
- ``delta_weight(layer, adapter, delta)``: the change to W0, given plain LoRA's s·B·A (out, in);
- ``merge(layer, adapter, W)`` / ``unmerge(layer, adapter, W)``: the merged weight given W0 + s·B·A,
  and back again before s·B·A is subtracted;
- ``delete(layer, adapter)``: tidy up when the adapter leaves the layer.

>>> from tinylora.lora import LoraConfig
>>> variant_for(LoraConfig(r=2, use_dora=True)).name, lora_scaling(lora_alpha=8, r=4, use_rslora=True)
('DoRA', 4.0)
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..backend import asnumpy, get_array_module, to_device
from ..nn import Parameter
from ..tensor import Tensor

__all__ = ["lora_scaling", "LoraVariant", "DoraVariant", "PissaVariant", "variant_for", "row_norm",
           "pissa_factors"]


def lora_scaling(lora_alpha: float, r: int, use_rslora: bool = False) -> float:
    """s = α / r (LoRA), or α / √r (rsLoRA), which keeps the update's size steady as r grows."""
    return lora_alpha / (math.sqrt(r) if use_rslora else r)


class LoraVariant:
    """Plain LoRA: each hook leaves the layer's own computation as it is."""

    name = "LoRA"
    exclusive = False  # True: the adapter rewrites W0, so it must be the only adapter on its layer

    def shapes(self, r: int, out_features: int, in_features: int) -> dict:
        """Each parameter of the adapter and its shape: A (r, in), B (out, r)."""
        return {"lora_A": (r, in_features), "lora_B": (out_features, r)}

    def init(self, layer, adapter) -> None:
        pass

    def forward(self, layer, adapter, x) -> Tensor:
        return layer.lora_forward(x, adapter)  # h = W0·x + b + s·B·(A·x), fused when it can be

    def base_forward(self, layer, adapter, x, out: Tensor) -> Tensor:
        return out

    def delta_weight(self, layer, adapter, delta):
        return delta

    def merge(self, layer, adapter, W):
        return W

    def unmerge(self, layer, adapter, W):
        return W

    def delete(self, layer, adapter) -> None:
        pass


class DoraVariant(LoraVariant):
    """DoRA: a learned magnitude m (out,) per output row times the direction of W0 + s·B·A."""

    name = "DoRA"

    def shapes(self, r, out_features, in_features):
        return {**super().shapes(r, out_features, in_features), "lora_magnitude": (out_features,)}

    def init(self, layer, adapter):
        """m starts at the row norms of W0 + s·B·A, so the adapter starts as plain LoRA does."""
        adapter.lora_magnitude = Parameter(row_norm(self._weight(layer, adapter)))   # (out,)

    def forward(self, layer, adapter, x):
        """m / ‖W0 + s·B·A‖ · (W0·x + s·B·A·x) + b, the norm held constant (no gradient through it)."""
        weight, bias = layer.base_layer.weight, layer.base_layer.bias
        lora_out = layer.lora_update(x, adapter)                               # (..., out): s·B·(A·x)
        norm = row_norm(self._weight(layer, adapter))                          # (out,) a plain array
        out = (F.linear(x, weight) + lora_out) * (adapter.lora_magnitude / norm)  # (..., out)
        return out if bias is None else out + bias

    def delta_weight(self, layer, adapter, delta):
        W0 = layer.base_layer.weight.data
        W = W0 + delta                                                         # (out, in)
        return W * (adapter.lora_magnitude.data / row_norm(W))[:, None] - W0

    def merge(self, layer, adapter, W):
        self.merge_norm = row_norm(W)                                          # (out,) kept for unmerge
        return W * (adapter.lora_magnitude.data / self.merge_norm)[:, None]

    def unmerge(self, layer, adapter, W):
        return W * (self.merge_norm / adapter.lora_magnitude.data)[:, None]

    @staticmethod
    def _weight(layer, adapter):
        """W0 + s·B·A, (out, in)."""
        return layer.base_layer.weight.data + (adapter.lora_B.data @ adapter.lora_A.data) * adapter.scaling


class PissaVariant(LoraVariant):
    """PiSSA: A, B start as the top-r singular part of W0, and the frozen weight holds the rest.

    The starting factors A0, B0 (host float64, not parameters) are kept, so that
    W0 = W_res + s·B0·A0 can be recovered when the adapter is disabled, deleted or unloaded.
    """

    name = "PiSSA"
    exclusive = True

    def init(self, layer, adapter):
        weight = layer.base_layer.weight
        A0, B0, W_res = pissa_factors(asnumpy(weight.data), adapter.config.r, adapter.scaling)
        weight.data = to_device(W_res.astype(weight.dtype), weight.device)      # (out, in) frozen residual
        adapter.lora_A.data = to_device(A0.astype(weight.dtype), weight.device)  # (r, in)
        adapter.lora_B.data = to_device(B0.astype(weight.dtype), weight.device)  # (out, r)
        self.init_factors = (A0, B0)

    def base_forward(self, layer, adapter, x, out):
        """W_res·x + b + s·B0·(A0·x) = W0·x + b."""
        weight = layer.base_layer.weight
        A0, B0 = (Tensor(to_device(f.astype(weight.dtype), weight.device)) for f in self.init_factors)
        return out + F.linear(F.linear(x, A0), B0) * adapter.scaling

    def delta_weight(self, layer, adapter, delta):
        """s·(B·A − B0·A0): what the adapter changes relative to the original W0."""
        A0, B0 = self.init_factors
        weight = layer.base_layer.weight
        return delta - to_device((adapter.scaling * (B0 @ A0)).astype(weight.dtype), weight.device)

    def delete(self, layer, adapter):
        """The frozen weight gets W0 = W_res + s·B0·A0 back."""
        A0, B0 = self.init_factors
        weight = layer.base_layer.weight
        weight.data = to_device((asnumpy(weight.data) + adapter.scaling * (B0 @ A0)).astype(weight.dtype),
                                weight.device)


def variant_for(config) -> LoraVariant:
    """A new variant object for one adapter of ``config`` (a LoraConfig) on one layer."""
    if config.use_dora:
        return DoraVariant()
    if config.init_lora_weights == "pissa":
        return PissaVariant()
    return LoraVariant()


def row_norm(W):
    """‖W‖ of each output row: (out, in) -> (out,)."""
    return get_array_module(W).sqrt((W * W).sum(axis=1))


def pissa_factors(W0: np.ndarray, r: int, scaling: float):
    """Top-r SVD of W0 (out, in): A = √S Vᵀ/√s (r, in), B = U √S/√s (out, r), residual = W0 − s·B·A."""
    W64 = W0.astype(np.float64)
    U, S, Vt = np.linalg.svd(W64, full_matrices=False)  # host-ok: init-time SVD on the host
    root = np.sqrt(S[:r] / scaling)
    A = root[:, None] * Vt[:r]        # (r, in)
    B = U[:, :r] * root[None, :]      # (out, r)
    return A, B, W64 - scaling * (B @ A)
