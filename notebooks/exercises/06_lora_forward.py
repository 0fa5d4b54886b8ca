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
# # Exercise 6: the LoRA forward pass
#
# *About 10 minutes; 1 point.*
#
# LoRA (Hu et al., 2021) freezes a weight $W_0$ of shape $(d_{out}, d_{in})$ and learns a low-rank change
# $\Delta W = B A$ with $A$ of shape $(r, d_{in})$, $B$ of shape $(d_{out}, r)$ and
# $r \ll \min(d_{in}, d_{out})$. The paper writes column vectors, $h = W_0 x + \frac{\alpha}{r} B A x$. Our
# activations are rows, `x` of shape `(..., d_in)`, so the same layer reads
#
# $$h = x W_0^\top + \frac{\alpha}{r}\, x A^\top B^\top .$$
#
# The paper fixes $\alpha$ once and does not tune it. The factor $1/r$ does *not* make the update's size
# independent of the rank: with $A$ drawn at a fixed scale, $B A x$ is a sum of $r$ terms that grows like
# $\sqrt r$ when they are independent, so $\alpha/r$ makes large ranks learn more slowly at one learning rate.
# That is rsLoRA's point (exercise 16), which scales by $\alpha/\sqrt r$ instead. `alpha` may be an int that
# `r` does not divide: the scaling is the true quotient `alpha / r`.
#
# **Write** `lora_forward(x, W0, A, B, alpha, r)`, which returns `h` of shape `(..., d_out)`.
#
# (In a fresh adapter $B = 0$, so $h = x W_0^\top$. The checker uses a random $B$, or the adapter's path would
# be invisible.)

# %%
import numpy as np

from tinylora.exercises import check_lora_forward

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def lora_forward(x, W0, A, B, alpha, r):
    """h = x W0^T + (alpha/r) x A^T B^T. x (..., in), W0 (out, in), A (r, in), B (out, r) -> (..., out)."""
    raise NotImplementedError("Exercise 6: the LoRA forward pass")


# %% tags=["exercise-check"]
check_lora_forward(lora_forward)

# %% [markdown]
# ## Going further
#
# Count the multiply-adds of `x @ A.T @ B.T` and of `x @ (B @ A).T` for one row of x. Which is cheaper, and
# when?
