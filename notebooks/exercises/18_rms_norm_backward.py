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
# # Exercise 18: RMSNorm backward
#
# *About 25 minutes; 2 points.*
#
# Llama normalises with RMSNorm: no mean is subtracted and there is no bias,
#
# $$y = \hat x \cdot w, \qquad \hat x = x \cdot \mathrm{rstd}, \qquad \mathrm{rstd} =
# \frac{1}{\sqrt{\mathrm{mean}(x^2) + \epsilon}},$$
#
# the mean over the last axis. As in layer norm (exercise 4), rstd depends on $x$, so $dx$ has a direct term
# and a term through rstd; the weight's gradient collects over every row.
#
# **Write** `rms_norm_backward(x, weight, grad_out, eps)`, which returns `(dx, dweight)` for `x` of shape
# `(..., D)` and `weight` of shape `(D,)`. The checker compares with `tinylora.llama_ops.rms_norm`.

# %%
import numpy as np

from tinylora.exercises import check_rms_norm_backward

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def rms_norm_backward(x, weight, grad_out, eps):
    """Gradients of y = x * rstd * weight. x (..., D), weight (D,) -> (dx, dweight)."""
    raise NotImplementedError("Exercise 18: RMSNorm backward")


# %% tags=["exercise-check"]
check_rms_norm_backward(rms_norm_backward)

# %% [markdown]
# ## Going further
#
# Compare your dx with layer norm's (exercise 4): which term is missing, and why?
