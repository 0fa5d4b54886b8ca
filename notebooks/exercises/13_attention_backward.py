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
# # Exercise 13: scaled-dot-product attention backward
#
# *About 35 minutes; 3 points.*
#
# Attention computes, per batch and head,
#
# $$S = \frac{q k^\top}{\sqrt d}\ (\text{with } S_{ij} = -\infty \text{ for } j > i \text{ when causal}),
# \qquad P = \mathrm{softmax}(S), \qquad \text{out} = P v .$$
#
# Given `grad_out` $= \partial L/\partial\,\text{out}$, go backward one step at a time: through the matmul
# $P v$ (to $dP$ and $dv$), through the softmax (row by row, as in exercise 12, on the *masked* $P$), and
# through $q k^\top/\sqrt d$ (to $dq$ and $dk$).
#
# **Write** `attention_backward(q, k, v, grad_out, causal)`, which returns `(dq, dk, dv)`, all of shape
# `(B, H, T, d)` like the inputs. Use `.swapaxes(-1, -2)` for the batched transpose.

# %%
import numpy as np

from tinylora.exercises import check_attention_backward

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def attention_backward(q, k, v, grad_out, causal):
    """(dq, dk, dv) of out = softmax(q k^T / sqrt(d), causal mask) v. All (B, H, T, d)."""
    raise NotImplementedError("Exercise 13: attention backward")


# %% tags=["exercise-check"]
check_attention_backward(attention_backward)

# %% [markdown]
# ## Going further
#
# Count the memory your backward keeps: which (T, T) arrays does it need? Flash-attention recomputes P in
# the backward instead of storing it; what does that trade?
