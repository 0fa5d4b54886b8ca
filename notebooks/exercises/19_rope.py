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
# # Exercise 19: rotary position embedding (RoPE)
#
# *About 20 minutes; 2 points.*
#
# RoPE (Su et al., 2021) encodes a token's position by rotating pairs of channels of its query and key by an
# angle that grows with the position. Hugging Face's Llama (and `tinylora.llama_ops.rope`) pairs channel $i$
# with channel $i + d/2$ ("rotate-half"), for a head of $d$ channels:
#
# $$\theta_i = \text{theta}^{-2i/d},\quad \text{angle}_{t,i} = (\text{offset} + t)\,\theta_i
# \quad (i < d/2,\ \text{repeated for } i + d/2),$$
#
# $$\text{out} = x \cos(\text{angle}) + \text{rotate\_half}(x) \sin(\text{angle}), \qquad
# \text{rotate\_half}(x) = \text{concat}(-x_{[d/2:]},\ x_{[:d/2]}).$$
#
# `offset` is the number of tokens already in a KV cache: token $t$ of the input sits at position
# offset + t.
#
# **Write** `rope(x, offset, theta)` for `x` of shape `(B, H, T, d)` with `d` even. (The library builds its
# angle tables in float32, as Hugging Face does, so this checker compares to 1e-4.)

# %%
import numpy as np

from tinylora.exercises import check_rope

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def rope(x, offset, theta):
    """Rotate-half RoPE of x (B, H, T, d), positions offset .. offset + T - 1 -> (B, H, T, d)."""
    raise NotImplementedError("Exercise 19: RoPE")


# %% tags=["exercise-check"]
check_rope(rope)

# %% [markdown]
# ## Going further
#
# Show that the dot product of a rotated query at position p and a rotated key at position p' depends only
# on p - p'. (Try it numerically with your function.)
