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
# # Exercise 15: a new engine op: softplus
#
# *About 20 minutes; 2 points.*
#
# tinylora's engine lets you define an op from outside the package with `Tensor.from_op(data, parents,
# backward)`: `data` is the forward's result (an array), `parents` the input Tensors, and `backward(g)` maps
# the output's gradient `g` to a tuple with one gradient per parent. For example:
#
# ```python
# def sin(t):
#     return Tensor.from_op(np.sin(t.data), (t,), lambda g: (g * np.cos(t.data),))
# ```
#
# Softplus is $\mathrm{softplus}(x) = \log(1 + e^x)$, a smooth ReLU; its slope is the sigmoid,
# $1/(1 + e^{-x})$. Some inputs are in the hundreds and thousands, where $e^x$ overflows: write both the
# forward and the slope in a form that never exponentiates a large positive number.
#
# **Write** `softplus(x)`, which takes a `Tensor` and returns a `Tensor` made with `Tensor.from_op`. The
# checker runs it on a Tensor, calls `backward` with a random upstream gradient and compares the output and
# `x.grad` with the engine's own ops.

# %%
import numpy as np

from tinylora import Tensor
from tinylora.exercises import check_softplus_op

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def softplus(x):
    """log(1 + e^x) of a Tensor x, elementwise, as a new op with its backward."""
    raise NotImplementedError("Exercise 15: softplus with Tensor.from_op")


# %% tags=["exercise-check"]
check_softplus_op(softplus)

# %% [markdown]
# ## Going further
#
# Check your op with `tinylora.gradcheck` in float64 (finite differences), as the package's own tests do.
