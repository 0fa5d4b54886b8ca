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
# # Exercise 7: merge and unmerge
#
# *About 10 minutes; 1 point.*
#
# After training, the adapter can be folded into the weight so inference costs nothing extra:
#
# $$W = W_0 + \frac{\alpha}{r} B A, \qquad\text{then}\qquad h = x W^\top .$$
#
# To switch adapters, take it out again: $W_0 = W - \frac{\alpha}{r} B A$.
#
# **Write** `merge(W0, A, B, alpha, r)` and `unmerge(W, A, B, alpha, r)`. Both return a new `(d_out, d_in)`
# array and leave their inputs unchanged (the checker notices `W0 += ...`). `unmerge(merge(W0, ...), ...)`
# gives `W0` back, up to rounding.

# %%
import numpy as np

from tinylora.exercises import check_merge_unmerge

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def merge(W0, A, B, alpha, r):
    """W = W0 + (alpha/r) B A. W0 (out, in), A (r, in), B (out, r) -> (out, in)."""
    raise NotImplementedError("Exercise 7: merge the adapter into W0")


def unmerge(W, A, B, alpha, r):
    """W0 = W - (alpha/r) B A, the inverse of merge."""
    raise NotImplementedError("Exercise 7: take the adapter out of W")


# %% tags=["exercise-check"]
check_merge_unmerge(merge, unmerge)

# %% [markdown]
# ## Going further
#
# In float32, `unmerge(merge(W0))` is not exactly `W0`. How large is the error, and why?
