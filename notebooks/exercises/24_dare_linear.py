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
# # Exercise 24: DARE, drop and rescale
#
# *About 10 minutes; 1 point.*
#
# DARE (Yu et al., 2023, arXiv:2311.03099) makes task vectors sparse before merging them, so they interfere
# less. Each entry of $T_i$ is **kept** with probability $p$ (`density`) and dropped otherwise, and the
# kept entries are **rescaled** by $1/p$, so that the expected vector is unchanged:
# $E[\tilde T_i] = p \cdot T_i / p + (1 - p) \cdot 0 = T_i$. `dare_linear` then merges linearly,
# $\sum_i w_i \tilde T_i$.
#
# **Write** `dare_linear(task_vectors, weights, density, keep)`: `task_vectors` is a float array (n, ...),
# `weights` a list of n numbers, `density` the keep probability in (0, 1], and `keep` a bool array of the
# same shape as `task_vectors`, True where an entry is kept (the random draw is done for you, so the answer
# is exact). Return the merged tensor, of shape (...).

# %%
import numpy as np

from tinylora.exercises import check_dare_linear

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run and either prints ✓ or says which case failed, which output and
# element, what it expected and what you returned. Run it again after a fix to get a hint; add `hint=True` to
# see the formula, and `seed=...` (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def dare_linear(task_vectors, weights, density, keep):
    """Drop (where not keep), rescale by 1/density, then the weighted sum: (n, ...) -> (...)."""
    raise NotImplementedError("Exercise 24: DARE")


# %% tags=["exercise-check"]
check_dare_linear(dare_linear)

# %% [markdown]
# ## Going further
#
# Draw `keep = np.random.default_rng(s).random(T.shape) < p` for 10,000 seeds and check that the mean of your
# merge is the plain weighted sum. Its variance per entry is $w^2 T^2 (1 - p) / p$: why does PEFT's
# `dare_linear` on the factors A and B, dropped independently, give a much noisier update than DARE on ΔW?
