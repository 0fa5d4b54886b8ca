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
# # Exercise 16: rsLoRA scaling
#
# *About 5 minutes; 1 point.*
#
# LoRA multiplies its update by $s = \alpha / r$. With $A$ drawn at a fixed scale and $B$ trained, the
# update $B A x$ is a sum of $r$ terms; if they were independent its size would grow like $\sqrt r$, and
# dividing by $r$ makes the scaled update *shrink* like $1/\sqrt r$ as the rank grows, so large ranks learn
# more slowly at one learning rate. rsLoRA (Kalajdzievski, 2023) divides by $\sqrt r$ instead, which keeps
# the update's size steady across ranks. PEFT and tinylora switch it on with `use_rslora=True`.
#
# **Write** `rslora_scaling(alpha, r, use_rslora)`, which returns the scaling as a float. `alpha` may be an
# int or a float; ranks include ones that are not perfect squares.

# %%
import numpy as np

from tinylora.exercises import check_rslora_scaling

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def rslora_scaling(alpha, r, use_rslora):
    """alpha / r, or alpha / sqrt(r) when use_rslora."""
    raise NotImplementedError("Exercise 16: rsLoRA scaling")


# %% tags=["exercise-check"]
check_rslora_scaling(rslora_scaling)

# %% [markdown]
# ## Going further
#
# For alpha = 16, tabulate both scalings at r = 1, 4, 16, 64. At which rank are they equal?
