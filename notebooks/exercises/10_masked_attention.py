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
# # Exercise 10: masked attention weights
#
# *About 15 minutes; 2 points.*
#
# Attention turns scores $s$ of shape `(..., T, T)` (query $i$, key $j$) into weights that sum to 1 over the
# keys. A causal model first hides the future keys:
#
# $$a_{ij} = \frac{e^{s_{ij} + m_{ij}}}{\sum_{j'} e^{s_{ij'} + m_{ij'}}}, \qquad
# m_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i \end{cases}$$
#
# so $a_{ij} = 0$ for $j > i$ and every row still sums to 1.
#
# **Write** `masked_attention_weights(scores)`, which returns an array of the scores' shape. The scores can be
# large (the checker uses values in the hundreds): subtract each row's maximum before `np.exp`.
# `np.where(mask, scores, -np.inf)` is a handy way to mask. Exercise 5's mask is what you need here.

# %%
import numpy as np

from tinylora.exercises import check_masked_attention_weights

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def masked_attention_weights(scores):
    """Softmax over keys of the causally masked scores. scores (..., T, T) -> weights (..., T, T)."""
    raise NotImplementedError("Exercise 10: mask the future, then softmax over keys")


# %% tags=["exercise-check"]
check_masked_attention_weights(masked_attention_weights)

# %% [markdown]
# ## Going further
#
# Why is masking with $-\infty$ before the softmax not the same as zeroing the weights after it?
