# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 21: an attention step with a KV cache
#
# *About 25 minutes; 3 points.*
#
# When a model generates text, each new token's query attends to the keys and values of every earlier token.
# A KV cache keeps those keys and values, so a step only computes them for the $T$ new tokens (often
# $T = 1$). The cache holds positions $0 \ldots S-1$; the new tokens are positions $S \ldots S+T-1$, and new
# query $i$ may see keys $j \le S + i$.
#
# **Write** `attention_with_cache(q, k_new, v_new, k_cache, v_cache)` for `q`, `k_new`, `v_new` of shape
# `(B, H, T, d)` and caches of shape `(B, H, S, d)` (S may be 0). Return `(out, k_cache, v_cache)`: the
# attention output `(B, H, T, d)` and the grown caches `(B, H, S + T, d)`, the new positions after the old.

# %%
import numpy as np

from tinylora.exercises import check_attention_with_cache

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def attention_with_cache(q, k_new, v_new, k_cache, v_cache):
    """One causal attention step over cached and new keys -> (out, k_cache, v_cache)."""
    raise NotImplementedError("Exercise 21: attention with a KV cache")


# %% tags=["exercise-check"]
check_attention_with_cache(attention_with_cache)

# %% [markdown]
# ## Going further
#
# Feed a sequence one token at a time through your function, starting from an empty cache, and compare
# with one call on the whole sequence (S = 0). They should agree.
