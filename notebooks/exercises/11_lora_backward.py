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
# # Exercise 11: the LoRA backward
#
# *About 25 minutes; 3 points.*
#
# A LoRA layer computes, for rows `x` of shape `(..., d_in)`,
#
# $$h = x W_0^\top + s\, (x A^\top) B^\top, \qquad s = \frac{\alpha}{r},$$
#
# with $W_0$ frozen, $A$ of shape $(r, d_{in})$ and $B$ of shape $(d_{out}, r)$. Backward receives
# `grad_out` $= \partial L/\partial h$, of $h$'s shape, and must return the gradients of the two trainable
# factors. Write $u = x A^\top$ (shape `(..., r)`): $B$ is the weight of a matmul whose input is $s\,u$, and
# $A$ is the weight of a matmul whose output's gradient is $s\, g B$. The same $A$ and $B$ serve every row, so
# their gradients add up over all the leading axes of `x`.
#
# **Write** `lora_backward(x, A, B, alpha, r, grad_out)`, which returns `(dA, dB)` with the shapes of `A`
# and `B`. (W0 is not needed: it receives no gradient.)
#
# **Step 0.** A fresh adapter has $B = 0$ and a random $A$ (that is why it changes nothing at first). Look at
# your two formulas: at step 0 one of them is exactly zero and the other is not. Which one, and what does that
# mean for the first optimiser step? The checker includes a case with $B = 0$.

# %%
import numpy as np

from tinylora.exercises import check_lora_backward

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def lora_backward(x, A, B, alpha, r, grad_out):
    """(dA, dB) of h = x W0^T + (alpha/r) x A^T B^T.

    x (..., in), A (r, in), B (out, r), grad_out (..., out).
    """
    raise NotImplementedError("Exercise 11: the LoRA backward")


# %% tags=["exercise-check"]
check_lora_backward(lora_backward)

# %% [markdown]
# ## Going further
#
# Train a fresh adapter for one step with SGD by hand: which factor moves first? After that step, is the
# other gradient still zero? (This is why LoRA starts with B = 0 and not A = 0: with A = 0 *and* B = 0 nothing
# would ever move.)
