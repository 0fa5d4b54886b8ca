"""The one training loop: batches, AdamW, warmup + cosine schedule, clipping, eval, history.

``fit`` minimises ``loss_fn(model, x, y)`` over batches drawn from the training data: by
default the next-token cross-entropy of a language model on random windows of token ids;
the planted-rank task of the sweep uses the same loop with a squared error to a teacher's
logits and a fixed pool of batches.

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

from ._validate import check_bool, check_int, check_real
from .backend import to_device
from .data import get_batch
from .host_memory import keep_freed_host_memory
from .optim import AdamW, WarmupCosine, clip_grad_norm_
from .tensor import Tensor, no_grad


def _model_device(model) -> str:
    return next(iter(model.parameters())).device


def _check_ids(ids, name, min_len):
    ids = np.asarray(ids)  # host-ok: token ids live on the host until batched
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D integer array of token ids, got dtype {ids.dtype} "
                         f"and shape {ids.shape}")
    if len(ids) < min_len:
        raise ValueError(f"{name} has {len(ids)} tokens; it needs at least {min_len} (block_size + 1)")
    return ids


def next_token_loss(model, x, y) -> Tensor:
    """The default ``loss_fn`` of ``fit``: the mean next-token cross-entropy, a () Tensor.

    ``x``, ``y``: (B, T) token ids, ``y`` is ``x`` shifted by one. A language model called as
    ``model(x, y)`` returns ``(logits, loss)``: logits (B, T, V) and this loss.
    """
    _, loss = model(x, y)
    return loss


def random_windows(ids, batch_size: int, block_size: int):
    """The default sampler of ``fit``: ``sample(rng) -> (x, y)``, ``batch_size`` random windows of ``ids``.

    x and y are (batch_size, block_size) host arrays, y shifted by one (``data.get_batch``).
    """
    return lambda rng: get_batch(ids, batch_size, block_size, rng)


def estimate_loss(model, ids, batch_size: int = 32, max_batches: int | None = 8,
                  block_size: int | None = None) -> float:
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


def _sampler(train_ids, batch_size: int, block_size: int):
    """``train_ids`` itself when it is a sampler, else random windows of the checked ids."""
    if callable(train_ids):
        return train_ids
    return random_windows(_check_ids(train_ids, "train_ids", block_size + 1), batch_size, block_size)


def _trainable(model) -> list:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no parameter with requires_grad=True: nothing to train")
    return trainable


def _scalar_loss(loss) -> Tensor:
    if not isinstance(loss, Tensor) or loss.size != 1:
        got = f"a Tensor of shape {loss.shape}" if isinstance(loss, Tensor) else type(loss).__name__
        raise TypeError(f"loss_fn must return a scalar Tensor (the loss to minimise), got {got}")
    return loss


def diverged(step: int, what: str, value: float, params, lr) -> FloatingPointError:
    """The error for a non-finite ``what`` at ``step``, with the likely cause; ``.step`` holds the step."""
    if any(p.dtype == np.float16 for p in params):
        kind = ("overflowed past 65504" if math.isinf(value)
                else "underflowed or overflowed (giving 0/0 or inf - inf)")
        cause = (f"the parameters are float16, whose range is small: a value {kind}; train in float32 "
                 "(model.to(np.float32)) or scale the loss down")
    elif step == 1 and what == "training loss":
        cause = ("it was non-finite before the first update, so the learning rate is not the cause: "
                 "look for NaN or inf in the inputs or the weights")
    else:
        cause = f"the learning rate is probably too high (lr={lr}); lower it, or clip gradients (grad_clip)"
    error = FloatingPointError(f"{what} became {value} at step {step}: {cause}")
    error.step = step
    return error


def _train_step(model, loss_fn, x, y, optimizer, schedule, params, grad_clip, step, lr) -> float:
    """One update: loss, zero_grad, backward, clip, optimizer step, schedule step; returns the loss.

    A non-finite loss or gradient norm raises FloatingPointError before the parameters change.
    """
    loss = _scalar_loss(loss_fn(model, x, y))
    value = loss.item()
    if not math.isfinite(value):
        raise diverged(step, "training loss", value, params, lr)
    optimizer.zero_grad()
    loss.backward()
    if grad_clip is not None:
        norm = clip_grad_norm_(params, grad_clip)
        if not math.isfinite(norm):
            raise diverged(step, "the gradient norm", norm, params, lr)
    optimizer.step()
    schedule.step()
    return value


def _check_after_last_step(model, steps: int, params, lr) -> None:
    """The last update is checked too: every trainable parameter must still be finite."""
    for name, p in model.named_parameters():
        if p.requires_grad and not bool(p.xp.isfinite(p.data).all()):
            raise diverged(steps, f"parameter {name!r} (after the last update)", math.nan, params, lr)


def _check_fit_args(lr, weight_decay, grad_clip, eval_every, eval_batches, seed, progress, block_size,
                    loss_fn, optimizer) -> None:
    check_real("lr", lr, low=0.0, where="fit")
    check_real("weight_decay", weight_decay, low=0.0, where="fit")
    if grad_clip is not None:
        check_real("grad_clip", grad_clip, low=0.0, low_inclusive=False, where="fit")
    if eval_every is not None:
        check_int("eval_every", eval_every, low=1, where="fit")
    check_int("eval_batches", eval_batches, low=1, where="fit")
    check_int("seed", seed, low=0, where="fit")
    check_bool("progress", progress, where="fit")
    if block_size is not None:
        check_int("block_size", block_size, low=1, where="fit")
    if not callable(loss_fn):
        raise TypeError(f"fit: loss_fn must be callable as loss_fn(model, x, y), got {loss_fn!r}")
    if optimizer is not None and not hasattr(optimizer, "param_groups"):
        raise TypeError("fit: optimizer must be an Optimizer (with param_groups), "
                        f"got {type(optimizer).__name__}")


def fit(model, train_ids, val_ids=None, *, steps: int = 200, batch_size: int = 16,
        block_size: int | None = None, lr: float = 1e-3, weight_decay: float = 0.0, optimizer=None,
        warmup_steps: int = 0, min_lr_ratio: float = 0.1, grad_clip: float | None = 1.0,
        eval_every: int | None = None, eval_batches: int = 4, seed: int = 0, progress: bool = True,
        desc: str = "train", loss_fn=next_token_loss) -> dict:
    """Train ``model`` for ``steps`` batches; return the history.

    ``train_ids``: a 1-D array of token ids, from which each step draws ``batch_size`` random
    windows of ``block_size`` tokens (``random_windows``); or any sampler ``sample(rng) -> (x, y)``
    that returns one batch of host arrays, called with fit's generator seeded by ``seed``.
    ``loss_fn(model, x, y) -> Tensor``: the scalar to minimise for a batch (x, y on the model's
    device); the default, ``next_token_loss``, is the language model's own cross-entropy.

    Only parameters with ``requires_grad`` are optimised (AdamW unless ``optimizer`` is given),
    with linear warmup then cosine decay to ``min_lr_ratio * lr``, gradients clipped to a global
    norm of ``grad_clip``. ``val_ids`` are evaluated (``estimate_loss``) every ``eval_every`` steps
    and at the end. History keys: step, train_loss, lr, val_step, val_loss, seconds.

    A non-finite loss, gradient norm or validation loss, or a parameter that is not finite after
    the last update, raises FloatingPointError naming the step (``error.step``) and the likely
    cause (float16 range, bad inputs, or too high a learning rate); the failing update is not applied.

    >>> from tinylora.models import GPT, GPTConfig
    >>> model = GPT(GPTConfig.preset("nano"))
    >>> x = np.arange(64).reshape(2, 32) % 7                    # (B, T), one fixed batch
    >>> squared = lambda model, x, y: (model(x)[0] ** 2).mean()  # push every logit to 0
    >>> history = fit(model, lambda rng: (x, x), steps=3, loss_fn=squared, progress=False)
    >>> history["train_loss"][-1] < history["train_loss"][0]
    True
    """
    steps = check_int("steps", steps, low=1, where="fit")
    batch_size = check_int("batch_size", batch_size, low=1, where="fit")
    _check_fit_args(lr, weight_decay, grad_clip, eval_every, eval_batches, seed, progress, block_size,
                    loss_fn, optimizer)
    T = block_size or model.config.block_size
    sample = _sampler(train_ids, batch_size, T)
    if val_ids is not None:
        val_ids = _check_ids(val_ids, "val_ids", T + 1)
    trainable = _trainable(model)
    keep_freed_host_memory()  # each step reuses the last step's buffers (tinylora.host_memory)
    if optimizer is None:
        optimizer = AdamW(trainable, lr=lr, weight_decay=weight_decay)
    schedule = WarmupCosine(optimizer, warmup_steps=warmup_steps, total_steps=steps,
                            min_lr_ratio=min_lr_ratio)
    rng = np.random.default_rng(seed)
    device = _model_device(model)
    history = {"step": [], "train_loss": [], "lr": [], "val_step": [], "val_loss": [], "seconds": 0.0}
    start = time.perf_counter()
    model.train()
    bar = progress_bar(steps, desc, progress)
    try:
        for step in range(1, steps + 1):
            x, y = sample(rng)                                   # (B, T) each, host
            x, y = to_device(x, device), to_device(y, device)
            value = _train_step(model, loss_fn, x, y, optimizer, schedule, trainable, grad_clip, step,
                                optimizer.param_groups[0]["lr"])
            history["step"].append(step)
            history["train_loss"].append(value)
            history["lr"].append(optimizer.param_groups[0]["lr"])
            if val_ids is not None and ((eval_every and step % eval_every == 0) or step == steps):
                history["val_step"].append(step)
                history["val_loss"].append(estimate_loss(model, val_ids, batch_size=batch_size,
                                                         max_batches=eval_batches, block_size=T))
                if not math.isfinite(history["val_loss"][-1]):
                    raise diverged(step, "validation loss", history["val_loss"][-1], trainable, lr)
            bar.set_postfix(loss=f"{value:.4f}")
            bar.update(1)
        _check_after_last_step(model, steps, trainable, lr)
    finally:
        bar.close()
    history["seconds"] = time.perf_counter() - start
    return history
