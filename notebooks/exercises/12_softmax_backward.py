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
# # Exercise 12: softmax backward
#
# *About 20 minutes; 2 points.*
#
# $p = \mathrm{softmax}(x)$ along the last axis: $p_j = e^{x_j} / \sum_k e^{x_k}$. Every $p_j$ depends on
# every $x_i$ of its row, through the sum in the denominator:
#
# $$\frac{\partial p_j}{\partial x_i} = p_j(\delta_{ij} - p_i).$$
#
# Backward receives `grad_out` $g = \partial L/\partial p$ and returns $\partial L/\partial x_i =
# \sum_j g_j\, \partial p_j/\partial x_i$. Build it without forming the $(C, C)$ Jacobian. Some inputs are in
# the thousands, so compute $p$ in a way that does not overflow.
#
# **Write** `softmax_backward(x, grad_out)`, which returns `dx` of `x`'s shape `(..., C)`.

# %%
import numpy as np

from tinylora.exercises import check_softmax_backward

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def softmax_backward(x, grad_out):
    """dx for p = softmax(x) over the last axis. x, grad_out (..., C) -> (..., C)."""
    raise NotImplementedError("Exercise 12: softmax backward")


# %% tags=["exercise-check"]
check_softmax_backward(softmax_backward)

# %% [markdown]
# ## Going further
#
# Show that each row of dx sums to zero. Why must it? (Hint: adding a constant to a row of x changes
# nothing.)
