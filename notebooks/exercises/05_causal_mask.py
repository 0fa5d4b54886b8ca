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
# # Exercise 5: the causal mask
#
# *About 5 minutes; 1 point.*
#
# A GPT predicts token $i + 1$ from tokens $0, \dots, i$. In self-attention, query position $i$ must
# therefore never look at a key position $j > i$: that would be reading the answer.
#
# **Write** `causal_mask(T)`, which returns a `(T, T)` **bool** array with `mask[i, j] = True` when query
# $i$ *may attend* to key $j$, that is when $j \le i$ (the past and the token itself). For $T = 3$:
#
# ```
# [[ True, False, False],
#  [ True,  True, False],
#  [ True,  True,  True]]
# ```
#
# The checker compares with where tinylora's own `scaled_dot_product_attention(..., causal=True)` puts weight.

# %%
import numpy as np

from tinylora.exercises import check_causal_mask

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def causal_mask(T):
    """(T, T) bool array: True where query i may attend to key j (j <= i)."""
    raise NotImplementedError("Exercise 5: build the causal mask")


# %% tags=["exercise-check"]
check_causal_mask(causal_mask)

# %% [markdown]
# ## Going further
#
# Exercise 10 uses this mask inside the attention softmax.
