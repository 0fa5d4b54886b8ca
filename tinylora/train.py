"""The training loop: batches, AdamW, warmup + cosine schedule, clipping, eval, history.

>>> import numpy as np
>>> from tinylora.models import GPT, GPTConfig
>>> model = GPT(GPTConfig.preset("nano"))
>>> ids = np.arange(500) % 7
>>> history = fit(model, ids, steps=5, batch_size=4, progress=False)
>>> len(history["train_loss"])
5
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from .backend import to_device
from .data import get_batch
from .optim import AdamW, WarmupCosine, clip_grad_norm_
from .tensor import no_grad


def _model_device(model) -> str:
    return next(iter(model.parameters())).device


def _check_ids(ids, name, min_len):
    ids = np.asarray(ids)  # host-ok: token ids live on the host until batched
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D integer array of token ids, got dtype {ids.dtype} and shape {ids.shape}")
    if len(ids) < min_len:
        raise ValueError(f"{name} has {len(ids)} tokens; it needs at least {min_len} (block_size + 1)")
    return ids


def estimate_loss(model, ids, batch_size: int = 32, max_batches: int | None = 8, block_size: int | None = None) -> float:
    """Mean next-token loss over consecutive, non-overlapping windows of ``ids`` (deterministic).

    The same ids always give the same windows, so two models are compared on identical text.
    """
    T = block_size or model.config.block_size
    ids = _check_ids(ids, "ids", T + 1)
    starts = np.arange(0, len(ids) - T, T)  # host-ok: window offsets
    if max_batches is not None:
        starts = starts[: batch_size * max_batches]
    device, was_training = _model_device(model), model.training
    model.eval()
    total, count = 0.0, 0
    with no_grad():
        for i in range(0, len(starts), batch_size):
            chunk = starts[i:i + batch_size]
            x = np.stack([ids[s:s + T] for s in chunk])          # (b, T) host-ok
            y = np.stack([ids[s + 1:s + T + 1] for s in chunk])  # (b, T) host-ok
            _, loss = model(to_device(x, device), to_device(y, device))
            total += loss.item() * len(chunk)
            count += len(chunk)
    model.train(was_training)
    return total / count


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar of ``total`` steps; off when ``enabled`` is False or TQDM_DISABLE=1."""
    from tqdm import tqdm  # the text bar: works in terminals and notebooks without ipywidgets
    disabled = not enabled or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    return tqdm(total=total, desc=desc, disable=disabled, leave=False, dynamic_ncols=True)


def fit(model, train_ids, val_ids=None, *, steps: int = 200, batch_size: int = 16, block_size: int | None = None,
        lr: float = 1e-3, weight_decay: float = 0.0, optimizer=None, warmup_steps: int = 0,
        min_lr_ratio: float = 0.1, grad_clip: float | None = 1.0, eval_every: int | None = None,
        eval_batches: int = 4, seed: int = 0, progress: bool = True, desc: str = "train") -> dict:
    """Train ``model`` on random windows of ``train_ids``; return the history.

    Only parameters with ``requires_grad`` are optimised (AdamW unless ``optimizer`` is given),
    with linear warmup then cosine decay to ``min_lr_ratio * lr``. ``val_ids`` are evaluated
    every ``eval_every`` steps and at the end. History keys: step, train_loss, lr,
    val_step, val_loss, seconds.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    T = block_size or model.config.block_size
    train_ids = _check_ids(train_ids, "train_ids", T + 1)
    if val_ids is not None:
        val_ids = _check_ids(val_ids, "val_ids", T + 1)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no parameter with requires_grad=True: nothing to train")
    if optimizer is None:
        optimizer = AdamW(trainable, lr=lr, weight_decay=weight_decay)
    schedule = WarmupCosine(optimizer, warmup_steps=warmup_steps, total_steps=steps, min_lr_ratio=min_lr_ratio)
    rng = np.random.default_rng(seed)
    device = _model_device(model)
    history = {"step": [], "train_loss": [], "lr": [], "val_step": [], "val_loss": [], "seconds": 0.0}
    start = time.perf_counter()
    model.train()
    bar = progress_bar(steps, desc, progress)
    for step in range(1, steps + 1):
        x, y = get_batch(train_ids, batch_size, T, rng)  # (b, T) each, host
        _, loss = model(to_device(x, device), to_device(y, device))
        optimizer.zero_grad()
        loss.backward()
        if grad_clip is not None:
            clip_grad_norm_(trainable, grad_clip)
        optimizer.step()
        schedule.step()
        value = loss.item()
        if not math.isfinite(value):
            bar.close()
            raise FloatingPointError(f"training loss became {value} at step {step}; lower the learning rate (lr={lr})")
        history["step"].append(step)
        history["train_loss"].append(value)
        history["lr"].append(optimizer.param_groups[0]["lr"])
        if val_ids is not None and ((eval_every and step % eval_every == 0) or step == steps):
            history["val_step"].append(step)
            history["val_loss"].append(estimate_loss(model, val_ids, batch_size=batch_size, max_batches=eval_batches,
                                                     block_size=T))
        bar.set_postfix(loss=f"{value:.4f}")
        bar.update(1)
    bar.close()
    history["seconds"] = time.perf_counter() - start
    return history
