"""``add_weighted_adapter``: a new adapter made from others, each merge reasoned about on ΔW = s·B·A.

Adapter i on a layer adds ΔW_i = s_i·B_i·A_i (out, in), with A_i (r_i, in), B_i (out, r_i) and its own
scaling s_i (α/r, or α/√r with rsLoRA). Given weights w_i, the update one would like is

    ΔW* = Σ_i w_i·ΔW_i.

The new adapter always has scaling 1 (r = lora_alpha = its rank, no rsLoRA), so its ΔW is exactly B·A:
each s_i is applied once, inside the merge, and never again (peft#3111, peft#3449).

Exact in ΔW (the merge is computed on the updates, not on their factors):

- ``"cat"``: A = [w_1·s_1·A_1; w_2·s_2·A_2; ...] stacked by rows, B = [B_1, B_2, ...] by columns, so
  B·A = Σ_i w_i·s_i·B_i·A_i = ΔW* exactly, any weights, any ranks. The price: rank Σ_i r_i.
- ``"svd"``: ΔW* truncated to its top ``svd_rank`` singular directions (default: the largest r_i),
  B = U_k·S_k, A = V_kᵀ. By Eckart–Young this is the best rank-k approximation of ΔW*; the error is
  ‖ΔW* − B·A‖_F = √(Σ_{j>k} σ_j²), zero when k ≥ rank(ΔW*) (always when k ≥ Σ_i r_i).
- ``"ties_svd"``, ``"dare_linear_svd"``, ``"dare_ties_svd"``, ``"magnitude_prune_svd"``: the TIES, DARE or
  pruning rule applied to the ΔW_i themselves, as the papers define it on task vectors, then the SVD.

Merging factors (the rule is applied to the A_i and to the B_i separately; PEFT's definitions):

- ``"linear"``: with c_i = w_i·s_i, A = Σ_i sign(c_i)·√|c_i|·A_i and B = Σ_i √|c_i|·B_i. Then
  B·A = Σ_i c_i·B_i·A_i + Σ_{i≠j} √|c_i|·sign(c_j)·√|c_j|·B_i·A_j: the cross terms B_i·A_j mix one
  adapter's output directions with another's input directions. For w = (1, −1) and s = (1, 1) the
  update is (B_1 + B_2)(A_1 − A_2), not B_1·A_1 − B_2·A_2 (peft#3013). Exact only for one adapter,
  or when the cross terms vanish (B_i·A_j = 0). Cheap: the rank stays r, so all ranks must be equal.
- ``"ties"``, ``"dare_linear"``, ``"dare_ties"``, ``"magnitude_prune"``: the same, with the rule applied
  to the stacks of A's and of B's. A pruned entry of A or B is not an entry of ΔW: it removes a piece of
  a whole row or column of the update, so these keep the cross terms and do not perform TIES or DARE on
  ΔW; use the ``_svd`` types for that.

The rules (each on a stack of task tensors T_i, with weights w_i; ``combine_tensors``):

- linear: Σ_i w_i·T_i.
- magnitude_prune: keep the ``density`` fraction of entries of each T_i of largest magnitude, then
  Σ_i w_i·T_i.
- TIES (Yadav et al., 2023, arXiv:2306.01708), trim, elect sign, disjoint merge: prune each T_i by
  magnitude, elect each entry's sign as the sign of Σ_i T_i (``majority_sign_method="total"``) or of
  Σ_i sign(T_i) (``"frequency"``), then average w_i·T_i over the i whose sign agrees with it. It is a
  mean, not a sum: two agreeing adapters at weight 1 give their average.
- DARE (Yu et al., 2023, arXiv:2311.03099), drop and rescale: keep each entry with probability
  ``density`` and divide the kept ones by ``density``, so E[T̃_i] = T_i; then linear (``dare_linear``)
  or TIES' sign election and disjoint merge (``dare_ties``). The masks come from ``seed``.

For one adapter, ``"linear"`` gives B·A = w·s·B_1·A_1 exactly (and PEFT always uses linear for one
adapter; here every type does what it says, so ``"svd"`` with a small ``svd_rank`` compresses an adapter).

The merge runs once, on the host in float64, like PiSSA's SVD; the new factors are stored in the model's
dtype on its device. Only plain LoRA (and rsLoRA) adapters combine: DoRA's and PiSSA's updates are not
s·B·A.

>>> from tinylora.models import GPT, GPTConfig
>>> from tinylora.lora import LoraConfig, add_adapter, get_delta_weights
>>> model = GPT(GPTConfig.preset("nano"))
>>> for name, seed in [("a", 1), ("b", 2)]:
...     _ = add_adapter(model, name, LoraConfig(r=2, init_lora_weights=False, seed=seed))
>>> add_weighted_adapter(model, ["a", "b"], [1.0, -1.0], "a_minus_b", combination_type="cat")
>>> dW = {n: get_delta_weights(model, n)["blocks.0.attn.q_proj"] for n in ("a", "b", "a_minus_b")}
>>> bool(np.allclose(dW["a_minus_b"], dW["a"] - dW["b"], atol=1e-6))
True
"""
from __future__ import annotations

import math
import re

import numpy as np

from .._validate import check_choice, check_int, check_real
from ..backend import asnumpy, to_device
from ..nn import Module
from .config import LoraConfig
from .model import adapter_names, add_adapter, lora_layers

FACTOR_TYPES = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
DELTA_TYPES = ("svd", "ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")
COMBINATION_TYPES = ("cat", *FACTOR_TYPES, *DELTA_TYPES)
DENSITY_TYPES = ("ties", "dare_linear", "dare_ties", "magnitude_prune", *DELTA_TYPES[1:])
SIGN_METHODS = ("total", "frequency")
RULES = FACTOR_TYPES  # the rules combine_tensors applies: the factor types' names, on any tensors


# ---- the rules, on a stack of task tensors (host float64) ---------------------------------------
def prune_by_magnitude(x: np.ndarray, density: float) -> np.ndarray:
    """Keep the k = int(density · x.size) entries of largest magnitude, zero the rest (same shape)."""
    k = int(density * x.size)
    keep = np.argsort(-np.abs(x), axis=None, kind="stable")[:k]
    mask = np.zeros(x.size, dtype=bool)
    mask[keep] = True
    return np.where(mask.reshape(x.shape), x, 0.0)


def prune_at_random(x: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """DARE's drop and rescale: keep each entry with probability ``density``, divide kept ones by it."""
    mask = rng.random(x.shape) < density
    return np.where(mask, x / density, 0.0)


def majority_sign_mask(stack: np.ndarray, method: str = "total") -> np.ndarray:
    """TIES' elected sign: stack (n, ...) -> bool (n, ...), True where T_i's sign is the elected one
    (the sign of Σ_i T_i for "total", of Σ_i sign(T_i) for "frequency"; ties elect +)."""
    signs = np.sign(stack)
    votes = stack.sum(axis=0) if method == "total" else signs.sum(axis=0)
    return signs == np.where(votes >= 0, 1.0, -1.0)


def disjoint_merge(weighted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """TIES' disjoint mean: average the entries of (n, ...) that ``mask`` keeps (0 where none is kept)."""
    return (weighted * mask).sum(axis=0) / np.maximum(mask.sum(axis=0), 1)


def combine_tensors(tensors: list, weights, method: str, density: float | None = None,
                    majority_sign_method: str = "total", rng: np.random.Generator | None = None):
    """One tensor from ``tensors`` (equal shapes, host arrays) and their ``weights`` by ``method``: "linear",
    "magnitude_prune", "ties", "dare_linear" or "dare_ties" (see the module docstring). ``density`` in
    (0, 1] for all but "linear"; ``rng`` draws DARE's masks (default: a generator seeded with 0).

    >>> combine_tensors([np.array([1.0, -2.0]), np.array([3.0, 1.0])], [1.0, 1.0], "ties", density=1.0)
    array([ 2., -2.])
    """
    check_choice("method", method, RULES, where="combine_tensors")
    check_choice("majority_sign_method", majority_sign_method, SIGN_METHODS, where="combine_tensors")
    if method != "linear":
        check_real("density", density, low=0.0, high=1.0, low_inclusive=False, where="combine_tensors")
    if len(weights) != len(tensors):
        raise ValueError(f"combine_tensors: {len(tensors)} tensors need as many weights, got {len(weights)}")
    rng = np.random.default_rng(0) if rng is None else rng
    stack = np.stack([np.asarray(t, dtype=np.float64) for t in tensors])          # (n, ...)
    if method in ("magnitude_prune", "ties"):
        stack = np.stack([prune_by_magnitude(t, density) for t in stack])
    elif method in ("dare_linear", "dare_ties"):
        stack = np.stack([prune_at_random(t, density, rng) for t in stack])
    weighted = stack * np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (stack.ndim - 1))
    if method in ("ties", "dare_ties"):
        return disjoint_merge(weighted, majority_sign_mask(stack, majority_sign_method))
    return weighted.sum(axis=0)


# ---- the new factors of one layer ---------------------------------------------------------------
def _factors(layer, name: str):
    """(A, B, s) of adapter ``name`` on ``layer``: host float64 A (r, in), B (out, r), and its scaling."""
    adapter = layer.adapters[name]
    return (asnumpy(adapter.lora_A.data).astype(np.float64), asnumpy(adapter.lora_B.data).astype(np.float64),
            adapter.scaling)


def _cat_factors(layer, adapters):
    """A = [w_i·s_i·A_i] by rows, B = [B_i] by columns; an adapter the layer lacks adds zero rows."""
    rows, cols = [], []
    for name, w, r in adapters:
        if name in layer.adapters:
            A, B, s = _factors(layer, name)
            rows.append(w * s * A)                                                   # (r_i, in)
            cols.append(B)                                                           # (out, r_i)
        else:
            rows.append(np.zeros((r, layer.in_features)))
            cols.append(np.zeros((layer.out_features, r)))
    return np.concatenate(rows, axis=0), np.concatenate(cols, axis=1)                # (Σr, in), (out, Σr)


def _svd_factors(layer, adapters, rank, method, density, sign_method, rng):
    """Top-``rank`` SVD of the ΔW_i combined by ``method``: A = V_kᵀ (k, in), B = U_k·S_k (out, k)."""
    present = [(name, w) for name, w, _ in adapters if name in layer.adapters]
    deltas = []
    for name, _ in present:
        A, B, s = _factors(layer, name)
        deltas.append(s * (B @ A))                                                   # (out, in)
    target = combine_tensors(deltas, [w for _, w in present], method, density, sign_method, rng)
    U, S, Vt = np.linalg.svd(target, full_matrices=False)
    return Vt[:rank], U[:, :rank] * S[:rank]


def _factor_merge(layer, adapters, method, density, sign_method, rng):
    """The rule on the A's with weights sign(c_i)·√|c_i| and on the B's with √|c_i|, c_i = w_i·s_i."""
    factors = [_factors(layer, name) for name, _, _ in adapters]
    c = [w * s for (_, w, _), (_, _, s) in zip(adapters, factors)]
    weights_A = [math.copysign(math.sqrt(abs(ci)), ci) for ci in c]   # the sign goes on A only
    weights_B = [math.sqrt(abs(ci)) for ci in c]
    A = combine_tensors([f[0] for f in factors], weights_A, method, density, sign_method, rng)
    B = combine_tensors([f[1] for f in factors], weights_B, method, density, sign_method, rng)
    return A, B


# ---- checks, all before anything changes --------------------------------------------------------
def _check_arguments(model, adapters, weights, adapter_name, combination_type, svd_rank, density,
                     majority_sign_method):
    where = "add_weighted_adapter"
    check_choice("combination_type", combination_type, COMBINATION_TYPES, where=where)
    check_choice("majority_sign_method", majority_sign_method, SIGN_METHODS, where=where)
    if isinstance(adapters, str) or not isinstance(adapters, (list, tuple)) or not adapters:
        raise TypeError(f"{where}: adapters must be a non-empty list of adapter names, got {adapters!r}")
    known = adapter_names(model)
    unknown = [a for a in adapters if a not in known]
    if unknown:
        raise ValueError(f"{where}: no adapter named {unknown[0]!r}; the model has {known}")
    if not isinstance(weights, (list, tuple)) or len(weights) != len(adapters):
        raise ValueError(f"{where}: weights must be a list with one number per adapter ({len(adapters)}), "
                         f"got {weights!r}")
    weights = [check_real(f"weights[{i}]", w, where=where) for i, w in enumerate(weights)]
    if not isinstance(adapter_name, str) or not adapter_name.isidentifier():
        raise ValueError(f"{where}: adapter_name must be a Python identifier, got {adapter_name!r}")
    if adapter_name in known:
        raise ValueError(f"{where}: the model already has an adapter named {adapter_name!r}; choose another "
                         "adapter_name, or call delete_adapter(model, name) first")
    if svd_rank is not None:
        if combination_type not in DELTA_TYPES:
            raise ValueError(f"{where}: svd_rank is used only by {list(DELTA_TYPES)}, not by "
                             f"{combination_type!r}; got svd_rank={svd_rank!r}")
        check_int("svd_rank", svd_rank, low=1, where=where)
    if combination_type in DENSITY_TYPES:
        if density is None:
            raise ValueError(f"{where}: combination_type={combination_type!r} needs a density in (0, 1]")
        density = check_real("density", density, low=0.0, high=1.0, low_inclusive=False, where=where)
    elif density is not None:
        raise ValueError(f"{where}: density is used only by {list(DENSITY_TYPES)}, not by "
                         f"{combination_type!r}; got density={density!r}")
    return weights, density


def _check_layers(model, adapters, combination_type) -> list:
    """The adapted layers that hold any of ``adapters``; refuses merged layers, non-LoRA variants, and
    (for the factor types) unequal ranks or targets."""
    where = "add_weighted_adapter"
    layers = [(n, layer) for n, layer in lora_layers(model) if any(a in layer.adapters for a in adapters)]
    for n, layer in layers:
        if layer.merged:
            raise ValueError(f"{where}: layer {n!r} is merged; call unmerge_lora(model) first")
        for a in adapters:
            if a in layer.adapters and layer.adapters[a].variant.name != "LoRA":
                raise ValueError(f"{where}: adapter {a!r} is {layer.adapters[a].variant.name}, whose update "
                                 "is not s·B·A; only plain LoRA and rsLoRA adapters can be combined")
    if combination_type in FACTOR_TYPES:
        for n, layer in layers:  # per layer: a rank_pattern may give each layer its own r
            ranks = {a: layer.adapters[a].config.r for a in adapters if a in layer.adapters}
            if len(set(ranks.values())) > 1:
                raise ValueError(f"{where}: combination_type={combination_type!r} adds the factors slot by "
                                 f"slot, so all ranks must be equal; got ranks {ranks} on layer {n!r}. "
                                 "Use 'cat' or 'svd'")
        for n, layer in layers:
            missing = [a for a in adapters if a not in layer.adapters]
            if missing:
                raise ValueError(f"{where}: combination_type={combination_type!r} needs every adapter on the "
                                 f"same layers, but {missing[0]!r} does not adapt {n!r}. Use 'cat' or 'svd', "
                                 "which treat a missing update as zero")
    return layers


def _rank_of(layers, adapter_name: str) -> int:
    return next(layer.adapters[adapter_name].config.r for _, layer in layers
                if adapter_name in layer.adapters)


def _layer_rank(layer, entries, combination_type: str, svd_rank: int | None) -> int:
    """The new adapter's rank on ``layer``: Σ r_i for "cat", r for the factor types, else svd_rank or max."""
    ranks = [layer.adapters[a].config.r if a in layer.adapters else r for a, _, r in entries]
    present = [layer.adapters[a].config.r for a, _, _ in entries if a in layer.adapters]
    if combination_type == "cat":
        return sum(ranks)
    if combination_type in FACTOR_TYPES:
        return present[0]
    return svd_rank or max(present)


def _check_rank(layers, ranks: dict, combination_type: str) -> None:
    for n, layer in layers:
        smaller, rank = min(layer.out_features, layer.in_features), ranks[n]
        if rank > smaller:
            hint = " Use 'svd' with a smaller svd_rank" if combination_type == "cat" else ""
            raise ValueError(f"add_weighted_adapter: {combination_type!r} would give rank {rank}, larger "
                             f"than min(out, in) = {smaller} of layer {n!r}.{hint}")


# ---- the public function ------------------------------------------------------------------------
def add_weighted_adapter(model: Module, adapters: list, weights: list, adapter_name: str,
                         combination_type: str = "svd", svd_rank: int | None = None,
                         density: float | None = None, majority_sign_method: str = "total",
                         seed: int | None = 0) -> None:
    """Add adapter ``adapter_name``, made from ``adapters`` with ``weights`` by ``combination_type``
    (PEFT's ``add_weighted_adapter``; the algebra of each type is in the module docstring).

    The new adapter is a normal one (scaling 1, rank: r for the factor types, Σ r_i for "cat",
    ``svd_rank`` or the largest r_i for the svd types) on every layer any of ``adapters`` adapts: it
    saves, loads, merges and switches like any other, and is not made active. ``density``: the fraction
    kept, in (0, 1], for the TIES, DARE and pruning types. ``seed``: DARE's masks (the same seed, the
    same adapter). Every check runs before the model changes.
    """
    weights, density = _check_arguments(model, adapters, weights, adapter_name, combination_type, svd_rank,
                                        density, majority_sign_method)
    if seed is not None:
        seed = check_int("seed", seed, low=0, where="add_weighted_adapter")
    layers = _check_layers(model, adapters, combination_type)
    entries = list(zip(adapters, weights, [_rank_of(layers, a) for a in adapters]))
    ranks = {n: _layer_rank(layer, entries, combination_type, svd_rank) for n, layer in layers}
    _check_rank(layers, ranks, combination_type)
    rng = np.random.default_rng(seed)
    new = {}
    for n, layer in layers:  # every factor is computed before the model changes
        if combination_type == "cat":
            new[n] = _cat_factors(layer, entries)
        elif combination_type in FACTOR_TYPES:
            new[n] = _factor_merge(layer, entries, combination_type, density, majority_sign_method, rng)
        else:
            method = "linear" if combination_type == "svd" else combination_type.removesuffix("_svd")
            new[n] = _svd_factors(layer, entries, ranks[n], method, density, majority_sign_method, rng)
    first = layers[0][1].adapters[next(a for a in adapters if a in layers[0][1].adapters)].config
    rank = ranks[layers[0][0]]
    other = {re.escape(n): r for n, r in ranks.items() if r != rank}  # layers of another rank, scaling 1 too
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=tuple(n for n, _ in layers),
                        rank_pattern=other, alpha_pattern=dict(other),
                        lora_dropout=first.lora_dropout, bias=first.bias, seed=first.seed)
    add_adapter(model, adapter_name, config, targets=[n for n, _ in layers])
    for n, layer in layers:
        adapter, (A, B) = layer.adapters[adapter_name], new[n]
        for p, value in ((adapter.lora_A, A), (adapter.lora_B, B)):
            p.data = to_device(value.astype(p.dtype), p.device)
