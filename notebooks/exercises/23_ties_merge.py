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
# # Exercise 23: TIES merging
#
# *About 20 minutes; 2 points.*
#
# Two adapters trained on two tasks give two task vectors $T_1, T_2$ (their updates, flattened or as
# matrices). Adding them ($w_1 T_1 + w_2 T_2$) lets them interfere: where one pushes an entry up and the
# other down they cancel, and small, noisy entries pile up. TIES (Yadav et al., 2023, arXiv:2306.01708)
# merges in three steps, entry by entry:
#
# 1. **trim**: in each $T_i$ keep the `int(density * T_i.size)` entries of largest magnitude and zero the
#    rest (over the whole tensor, not per row);
# 2. **elect** a sign for each entry: the sign of $\sum_i \hat T_i$ over the trimmed vectors (+ where the sum
#    is 0);
# 3. **disjoint mean**: average $w_i \hat T_i$ over the vectors whose sign agrees with the elected one (an
#    entry that no vector keeps is 0).
#
# It is a mean, not a sum: an entry only one vector has keeps its whole value, and two vectors that agree
# are averaged. `add_weighted_adapter(..., combination_type="ties_svd")` applies exactly this to adapters'
# updates; notebook 08 measures what it keeps of two tasks.
#
# **Write** `ties_merge(task_vectors, weights, density)`: `task_vectors` is a float array (n, ...) with one
# task vector per row of the first axis, `weights` a list of n numbers, `density` in (0, 1]. Return the
# merged tensor, of shape (...).

# %%
import numpy as np

from tinylora.exercises import check_ties_merge

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (two to four task vectors, 1-D and 2-D, with weights that are
# not all 1) and either prints ✓ or says which case failed, which output and element, what it expected and
# what you returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and
# `seed=...` (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def ties_merge(task_vectors, weights, density):
    """Trim, elect a sign, disjoint mean: (n, ...) task vectors -> (...) merged."""
    raise NotImplementedError("Exercise 23: TIES merging")


# %% tags=["exercise-check"]
check_ties_merge(ties_merge)

# %% [markdown]
# ## Going further
#
# Merge $t_1 = (2, -1, 0, 3)$ and $t_2 = (-1, -1, 4, 1)$ at density 1 with your function and with a plain
# sum. Which entries does TIES halve, and which does it keep whole?
