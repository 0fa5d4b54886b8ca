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
# # Exercise 2: the backward of a matrix product
#
# *About 10 minutes; 1 point.*
#
# Let $Y = A B$ with $A$ of shape $(m, k)$, $B$ of shape $(k, n)$ and $Y$ of shape $(m, n)$:
#
# $$Y_{ij} = \sum_{p} A_{ip} B_{pj}.$$
#
# Given $G = \partial L / \partial Y$, of shape $(m, n)$, find $\partial L / \partial A$ $(m, k)$ and
# $\partial L / \partial B$ $(k, n)$. Start from one element: by the chain rule
# $\partial L / \partial A_{ip} = \sum_j G_{ij}\, \partial Y_{ij} / \partial A_{ip}$; then write the sum as a
# matrix product.
#
# **Write** `matmul_backward(a, b, grad_out)`, which returns the tuple `(grad_a, grad_b)`.
#
# A check you can always make: each gradient has the shape of its input, and there is only one way
# to combine an $(m, n)$ matrix with $B$ or $B^\top$ that gives $(m, k)$.
#
# <details><summary>Stuck?</summary>
#
# $\partial Y_{ij} / \partial A_{ip} = B_{pj}$, so
# $\partial L / \partial A_{ip} = \sum_j G_{ij} B_{pj} = (G B^\top)_{ip}$.
# </details>

# %%
import numpy as np

from tinylora.exercises import check_matmul_backward

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def matmul_backward(a, b, grad_out):
    """Gradients of out = a @ b. a (m, k), b (k, n), grad_out (m, n) -> (grad_a (m, k), grad_b (k, n))."""
    raise NotImplementedError("Exercise 2: the gradients of a @ b")


# %% tags=["exercise-check"]
check_matmul_backward(matmul_backward)

# %% [markdown]
# ## Going further
#
# Why does a bias-free `Linear` layer, `x @ W.T`, need the same two products? Which one does a frozen weight
# let you skip?
