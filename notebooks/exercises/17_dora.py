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
# # Exercise 17: DoRA's magnitude and direction
#
# *About 20 minutes; 2 points.*
#
# DoRA (Liu et al., 2024) writes the adapted weight $W = W_0 + s\,BA$ (shape `(out, in)`) as a length per
# output row times a direction with unit rows, and trains the lengths $m$ (shape `(out,)`) as parameters of
# their own:
#
# $$W' = m \odot \frac{W}{\lVert W \rVert_{\text{row}}}, \qquad h = x W'^\top .$$
#
# Our weights are `(out, in)` and each output row is one neuron's weights, so the norm is taken along
# `axis=1`. At the start, $m$ is set to the row norms of $W$, so the layer starts as plain LoRA does.
#
# **Write** two functions: `dora_magnitude(W0, A, B, alpha, r)`, the initial $m$, and
# `dora_forward(x, W0, A, B, alpha, r, magnitude)`, the layer's output `(..., out)` for a given $m$.

# %%
import numpy as np

from tinylora.exercises import check_dora

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def dora_magnitude(W0, A, B, alpha, r):
    """The norm of each output row of W0 + (alpha/r) B A: (out,)."""
    raise NotImplementedError("Exercise 17: DoRA's magnitude")


def dora_forward(x, W0, A, B, alpha, r, magnitude):
    """h = x (m * W / ||W||_row)^T with W = W0 + (alpha/r) B A. x (..., in) -> (..., out)."""
    raise NotImplementedError("Exercise 17: DoRA's forward")


# %% tags=["exercise-check"]
check_dora(dora_magnitude, dora_forward)

# %% [markdown]
# ## Going further
#
# With magnitude = dora_magnitude(...), show that dora_forward equals the plain LoRA forward of exercise 6.
