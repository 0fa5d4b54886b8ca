"""The merge lab: two adapters, one per task, on the same toy base, combined by every combination type.

A ``merge-lab`` LoRA run of rank r trains two adapters on the shipped base, as the domain task trains
one: ``recipes`` on the recipe cards and ``arithmetic`` on the sums (``MERGE_CORPORA``). It then builds
one adapter from the two with ``add_weighted_adapter`` for each combination type in ``MERGE_TYPES``,
with weights (1, 1) (the update one wants is ΔW₁ + ΔW₂) and density 0.5 for the types that prune, and
measures the held-out loss of every adapter on both tasks. The frozen base and each single adapter are
the references. The ``full`` run of the task is the multi-task reference: full fine-tuning on both
corpora mixed.

The run's line holds ``merge_lab``: the corpora, weights and density, and ``losses``, a map from each
model ("base", each task's own adapter, each combination type, or "joint" for the full run) to its
held-out loss on each corpus. Its ``val_loss`` is the mean over the two tasks of the ``cat`` adapter
(which is ΔW₁ + ΔW₂ exactly), or of the joint model; ``base_val_loss`` the base's mean.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from ..lora import (
    ADAPTER_WEIGHTS_NAME,
    add_adapter,
    add_weighted_adapter,
    count_parameters,
    delete_adapter,
    save_adapter,
    set_adapter,
)
from ..lora.merge import COMBINATION_TYPES, DENSITY_TYPES
from ..pretrained import load_base
from ..train import estimate_loss, fit

__all__ = ["MERGE_CORPORA", "MERGE_TYPES", "MERGE_WEIGHTS", "MERGE_DENSITY", "run_merge_lab", "merge_losses"]

MERGE_CORPORA = ("recipes", "arithmetic")
MERGE_TYPES = COMBINATION_TYPES          # cat, linear, ties, ..., and the _svd types
MERGE_WEIGHTS = (1.0, 1.0)
MERGE_DENSITY = 0.5


def merge_losses(model, adapters, evaluate, weights=MERGE_WEIGHTS, density=MERGE_DENSITY,
                 types=MERGE_TYPES) -> dict:
    """{type: {corpus: held-out loss}} of the adapter ``add_weighted_adapter`` makes from ``adapters``
    by each combination type in ``types``; ``evaluate(model) -> {corpus: loss}``. Each merged adapter is
    deleted after it is measured, and ``adapters[0]`` is left active."""
    losses = {}
    for kind in types:
        name = f"merged_{kind}"
        add_weighted_adapter(model, list(adapters), list(weights), name, combination_type=kind,
                             density=density if kind in DENSITY_TYPES else None)
        set_adapter(model, name)
        losses[kind] = evaluate(model)
        set_adapter(model, adapters[0])
        delete_adapter(model, name)
    return losses


def _adapter_bytes(model, adapter_name: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        save_adapter(model, folder, adapter_name)
        return os.path.getsize(os.path.join(folder, ADAPTER_WEIGHTS_NAME))


def _train(model, train_ids, spec, progress: bool, label: str) -> dict:
    return fit(model, train_ids, steps=spec.steps, batch_size=spec.batch_size, block_size=spec.block_size,
               lr=spec.lr, warmup_steps=max(1, spec.steps // 10), seed=spec.seed, progress=progress,
               desc=f"merge-lab {label}")


def run_merge_lab(spec, splits: dict, lora_config, eval_batches: int, progress: bool = False):
    """One ``merge-lab`` run of ``spec`` (a ``tasks.RunSpec``): (its results line, less what ``tasks.run``
    adds, and the model). ``splits``: {corpus: (train ids, held-out ids)} for each of ``MERGE_CORPORA``;
    ``lora_config``: each adapter's ``LoraConfig`` (None for the full run); ``eval_batches``: held-out
    batches per loss. (``tasks`` hands these over, so this module needs nothing from it.)"""
    model, _ = load_base()

    def evaluate(m) -> dict:
        return {c: estimate_loss(m, splits[c][1], batch_size=spec.batch_size, max_batches=eval_batches,
                                 block_size=spec.block_size) for c in MERGE_CORPORA}

    losses = {"base": evaluate(model)}
    curves = {}
    if spec.method == "full":           # the multi-task reference: every weight, both corpora mixed
        for p in model.parameters():
            p.requires_grad = True
        mixed = np.concatenate([splits[c][0] for c in MERGE_CORPORA])  # host-ok: token ids
        curves["joint"] = _train(model, mixed, spec, progress, "full, both tasks")
        losses["joint"] = evaluate(model)
        counts, adapter_bytes = count_parameters(model), None
    else:
        for i, corpus in enumerate(MERGE_CORPORA):
            add_adapter(model, corpus, lora_config)
            set_adapter(model, corpus)
            curves[corpus] = _train(model, splits[corpus][0], spec, progress, f"r={spec.rank} {corpus}")
            losses[corpus] = evaluate(model)
            if i == 0:  # one adapter's size and trainable count, before the second exists
                counts, adapter_bytes = count_parameters(model), _adapter_bytes(model, corpus)
        losses.update(merge_losses(model, MERGE_CORPORA, evaluate))
    reference = losses["joint" if spec.method == "full" else "cat"]
    metrics = {"val_loss": float(np.mean(list(reference.values()))),
               "base_val_loss": float(np.mean(list(losses["base"].values()))), "accuracy": None}
    first = next(iter(curves.values()))
    return {"metrics": metrics, "curve": {"step": first["step"], "train_loss": first["train_loss"]},
            "adapter_bytes": adapter_bytes, "planted": None, "analysis": None, "_counts": counts,
            "merge_lab": {"corpora": list(MERGE_CORPORA), "weights": list(MERGE_WEIGHTS),
                          "density": MERGE_DENSITY, "losses": losses,
                          "train_loss_end": {k: h["train_loss"][-1] for k, h in curves.items()}}}, model
