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
# # Exercise 9: subspace similarity
#
# *About 20 minutes; 2 points.*
#
# Do two adapters trained with different ranks learn the same directions? The LoRA paper (Section 7.2)
# compares the row spaces of their $A$ matrices. Take $A_1$ $(r_1, d_{in})$ and $A_2$ $(r_2, d_{in})$; let
# $U_i$ $(d_{in}, i)$ hold the top-$i$ right-singular vectors of $A_1$ and $V_j$ $(d_{in}, j)$ the top-$j$ of
# $A_2$. Then
#
# $$\phi(A_1, A_2, i, j) = \frac{\lVert U_i^\top V_j \rVert_F^2}{\min(i, j)} \in [0, 1],$$
#
# which is 1 when one subspace contains the other and 0 when they are orthogonal.
#
# **Write** `subspace_similarity(A1, A2, i, j)`, which returns a float.
#
# `np.linalg.svd(A, full_matrices=False)` returns `(U, S, Vt)` with the singular values in `S` largest first;
# the right-singular vectors of `A` are the **rows** of `Vt`. Example: $A_1$ spanning $e_1, e_2$ and $A_2$
# spanning $e_2, e_3$ in $\mathbb{R}^4$ share one of two directions, so $\phi = 1/2$.

# %%
import numpy as np

from tinylora.exercises import check_subspace_similarity

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def subspace_similarity(A1, A2, i, j):
    """phi = ||U_i^T V_j||_F^2 / min(i, j). A1 (r1, in), A2 (r2, in), 1 <= i <= r1, 1 <= j <= r2 -> float."""
    raise NotImplementedError("Exercise 9: the subspace similarity of A1 and A2")


# %% tags=["exercise-check"]
check_subspace_similarity(subspace_similarity)

# %% [markdown]
# ## Going further
#
# Two random subspaces of $\mathbb{R}^{d}$ give $\phi \approx \max(i, j)/d$. Check it with random matrices,
# and compare with `tinylora.experiments.analysis.random_subspace_similarity`.
