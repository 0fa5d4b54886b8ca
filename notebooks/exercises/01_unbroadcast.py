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
# # Exercise 1: the backward of a broadcasting add
#
# *About 15 minutes; 2 points.*
#
# When NumPy adds `x` of shape `(5, 1, 3)` to `y` of shape `(2, 5, 4, 3)`, it first *broadcasts* `x`:
# it puts new axes on the left until both have as many dimensions, then repeats `x` along every
# axis where it has size 1. The sum $z = x + y$ has shape `(2, 5, 4, 3)`.
#
# In backward we receive $g = \partial L / \partial z$, which has $z$'s shape, and need
# $\partial L / \partial x$, which has $x$'s shape. Each element $x_k$ was copied into many elements
# of $z$, and the gradients of all the copies add up:
#
# $$\frac{\partial L}{\partial x_k} = \sum_{m \,\in\, \text{copies of } x_k} g_m .$$
#
# So: sum $g$ over the leading axes that $x$ does not have, then over every axis where $x$ has size 1
# while $g$ does not, keeping that axis (size 1).
#
# **Write** `unbroadcast(grad, shape)`, which returns an array of exactly `shape`.
#
# | `grad.shape` | `shape` | sum over |
# |---|---|---|
# | `(4, 3)` | `(3,)` | axis 0 |
# | `(4, 3)` | `(4, 1)` | axis 1, keeping it |
# | `(2, 5, 4, 3)` | `(5, 1, 3)` | axis 0, then axis 2 of what is left, keeping it |
# | `(6,)` | `()` | everything |
#
# tinylora's engine uses one such helper for every broadcasting op (`+`, `-`, `*`, `/`).

# %%
import numpy as np

from tinylora.exercises import check_unbroadcast

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def unbroadcast(grad, shape):
    """Sum grad back down to shape, undoing NumPy broadcasting. Returns an array of exactly `shape`."""
    raise NotImplementedError("Exercise 1: sum grad over the broadcast axes")


# %% tags=["exercise-check"]
check_unbroadcast(unbroadcast)

# %% [markdown]
# ## Going further
#
# Why does `x * y` need the same helper, applied to `grad * y`? What changes for `x - y`?
