"""Sampling text from a language model: one ``generate`` that GPT and Llama share.

A model takes part by having ``config.vocab_size``, ``context_length`` (the most positions it
can see), ``new_cache(batch_size, max_len)`` (a ``KVCache``) and a forward
``model(ids, cache=None) -> (logits, loss)``. The prompt is run once (prefill), writing every
layer's keys and values into the cache; each new token then costs one position. Sampling order:
temperature, then top_k, then top_p (nucleus), then one draw per row from ``seed``'s generator.

>>> import numpy as np
>>> from tinylora.models import GPT, GPTConfig
>>> model = GPT(GPTConfig.preset("nano"), seed=0)
>>> generate(model, np.array([[1, 2, 3]]), 4, temperature=0).shape
(1, 7)
"""
from __future__ import annotations

import math

from .. import functional as F
from .._validate import check_bool, check_int, is_int, is_real
from ..backend import get_array_module
from ..tensor import Tensor, no_grad
from .adapter_rows import adapters_per_row

__all__ = ["generate", "sample_next"]


def _check_sampling(max_new_tokens, temperature, top_k, top_p, seed, eos_token_id, vocab_size) -> None:
    """Every sampling argument, before any work; the messages name the argument."""
    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not is_real(temperature):
        raise TypeError(f"temperature must be a number, got {temperature!r}")
    if math.isnan(temperature) or math.isinf(temperature):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (not is_real(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")
    if seed is not None:
        check_int("seed", seed, low=0, where="generate")
    if eos_token_id is not None:
        check_int("eos_token_id", eos_token_id, low=0, high=vocab_size - 1, where="generate")


def _check_prompt(ids, xp, vocab_size: int):
    """Token ids (B, T) as an integer array on the model's device, T >= 1, each in [0, vocab_size)."""
    data = ids.data if isinstance(ids, Tensor) else ids
    if isinstance(data, (list, tuple)):
        data = xp.asarray(data)
    if not hasattr(data, "dtype") or data.dtype.kind not in "iu":
        kind = getattr(data, "dtype", type(data))
        raise TypeError(f"ids must be an integer array of token ids, got {kind}")
    if data.ndim != 2 or data.shape[1] == 0 or data.shape[0] == 0:
        raise ValueError(f"ids must have shape (batch, time) with at least one token, got shape {data.shape}")
    low, high = int(data.min()), int(data.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"ids holds token id {high if high >= vocab_size else low}, "
                         f"outside the vocabulary [0, {vocab_size})")
    return xp.asarray(data)


def sample_next(logits, temperature: float = 1.0, top_k=None, top_p=None, rng=None):
    """One token id per row, shape (B, 1), from last-position logits (B, V).

    ``temperature == 0`` is greedy (argmax); otherwise the logits are divided by it, cut to the
    ``top_k`` likeliest and to the smallest set whose probability reaches ``top_p``, and one id is
    drawn per row by inverting the cumulative distribution with ``rng`` (the array module's Generator).
    """
    xp = get_array_module(logits)
    if getattr(logits, "ndim", None) != 2 or logits.shape[-1] == 0 or logits.dtype.kind != "f":
        raise ValueError(f"sample_next: logits must be a float array of shape (B, V) with V >= 1, got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    _check_sampling(0, temperature, top_k, top_p, None, None, logits.shape[-1])
    if temperature != 0 and not callable(getattr(rng, "random", None)):
        raise TypeError(f"sample_next: rng must be a Generator (xp.random.default_rng(seed)), got {rng!r}")
    if temperature == 0:
        return logits.argmax(axis=-1)[:, None]
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = xp.sort(logits, axis=-1)[:, -top_k][:, None]        # (B, 1)
        logits = xp.where(logits < kth, -xp.inf, logits)
    probs = F.softmax(Tensor(logits), axis=-1).data               # (B, V)
    if top_p is not None and top_p < 1:
        descending = xp.sort(probs, axis=-1)[:, ::-1]             # (B, V)
        before = xp.cumsum(descending, axis=-1) - descending      # (B, V): mass of the likelier ones
        n_keep = (before < top_p).sum(axis=-1, keepdims=True)     # (B, 1), >= 1
        smallest = xp.take_along_axis(descending, n_keep - 1, axis=-1)  # (B, 1)
        probs = xp.where(probs < smallest, 0.0, probs).astype(probs.dtype)
    cdf = xp.cumsum(probs, axis=-1)                               # (B, V)
    u = rng.random((logits.shape[0], 1), dtype=cdf.dtype) * cdf[:, -1:]  # (B, 1)
    return (cdf < u).sum(axis=-1, keepdims=True).astype(xp.int64)


def generate(model, ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, use_cache: bool = True,
             eos_token_id: int | None = None, crop: bool = False, adapter_names=None):
    """Append up to ``max_new_tokens`` tokens to ``ids`` (B, T); returns (B, T + n_new) token ids.

    ``use_cache=False`` re-runs the whole sequence for every token (the same tokens, slower).
    With ``eos_token_id``, a row that emitted it keeps emitting it, and decoding stops as soon
    as every row has, so n_new may be less than ``max_new_tokens``. A sequence longer than the
    model's ``context_length`` is refused unless ``crop=True``: then the model sees only the last
    ``context_length`` tokens, re-run without a cache once the cache is full (positions shift).
    ``adapter_names`` (one adapter name, or None for the base, per row) decodes each row with its
    own adapter in one batch, as ``model(ids, adapter_names=...)`` does (models/adapter_rows.py).
    Runs under ``no_grad`` in eval mode, and restores the model's mode.
    """
    vocab_size, context = model.config.vocab_size, model.context_length
    _check_sampling(max_new_tokens, temperature, top_k, top_p, seed, eos_token_id, vocab_size)
    check_bool("use_cache", use_cache, where="generate")
    check_bool("crop", crop, where="generate")
    xp = next(iter(model.parameters())).xp
    ids = _check_prompt(ids, xp, vocab_size)
    total = ids.shape[1] + max_new_tokens
    if total > context and not crop:
        raise ValueError(f"the prompt ({ids.shape[1]} tokens) plus max_new_tokens ({max_new_tokens}) is "
                         f"{total}, longer than the model's context of {context} positions; "
                         "shorten them, or pass crop=True to keep only the last positions")
    with adapters_per_row(model, adapter_names, ids.shape[0]):   # the names are checked first
        if max_new_tokens == 0:
            return ids
        was_training = model.training
        model.eval()
        try:
            with no_grad():
                return _decode(model, ids, max_new_tokens, (temperature, top_k, top_p),
                               xp.random.default_rng(seed), use_cache, eos_token_id, min(total, context))
        finally:
            model.train(was_training)


def _decode(model, ids, max_new_tokens, sampling, rng, use_cache, eos_token_id, max_len):
    """The loop: prefill, then one token per step (fed through the cache while it has room)."""
    xp, context = get_array_module(ids), model.context_length
    cache = model.new_cache(ids.shape[0], max_len) if use_cache else None
    logits, _ = model(ids[:, -context:], cache=cache)              # (B, T, V): prefill
    finished = xp.zeros((ids.shape[0], 1), dtype=bool)              # (B, 1)
    for step in range(max_new_tokens):
        token = sample_next(logits.data[:, -1, :], *sampling, rng=rng)  # (B, 1)
        if eos_token_id is not None:
            token = xp.where(finished, eos_token_id, token)
            finished |= token == eos_token_id
        ids = xp.concatenate([ids, token.astype(ids.dtype)], axis=1)  # (B, T + step + 1)
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        if cache is not None and cache.length < cache.max_len:
            logits, _ = model(token, cache=cache)                  # (B, 1, V)
        else:
            cache = None  # full (crop=True): slide the window, recomputing it
            logits, _ = model(ids[:, -context:])                   # (B, <=context, V)
    return ids
