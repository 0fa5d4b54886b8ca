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
# LoRA (Hu et al., 2021) freezes a weight $W_0$ of shape $(d_{out}, d_{in})$ and learns a low-rank change
# $\Delta W = B A$ with $A$ of shape $(r, d_{in})$, $B$ of shape $(d_{out}, r)$ and
# $r \ll \min(d_{in}, d_{out})$. The paper writes column vectors, $h = W_0 x + \frac{\alpha}{r} B A x$. Our
# activations are rows, `x` of shape `(..., d_in)`, so the same layer reads
#
# $$h = x W_0^\top + \frac{\alpha}{r}\, x A^\top B^\top .$$
#
# The scaling $\alpha / r$ keeps the update's size about the same when you change the rank, so the
# learning rate need not be retuned.
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
# It tries your function on several inputs and either prints ✓ or tells you which case failed, what it
# expected, what you returned, and a hint. Work with plain NumPy (`import numpy as np`); inputs are float64
# arrays.

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
