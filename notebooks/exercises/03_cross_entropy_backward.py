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
# # Exercise 3: softmax and cross-entropy, backward
#
# *About 20 minutes; 2 points.*
#
# A language model scores $C$ classes (tokens) at each of $N$ positions: logits $z$ of shape $(N, C)$.
# With targets $t_n \in \{0, \dots, C-1\}$, the loss is the mean negative log-probability of the targets:
#
# $$p_{nc} = \frac{e^{z_{nc}}}{\sum_{c'} e^{z_{nc'}}}, \qquad
# L = -\frac{1}{N} \sum_{n=1}^{N} \log p_{n, t_n}.$$
#
# **Derive** $\partial L / \partial z_{nc}$, then **write** `cross_entropy_backward(logits, targets)`, which
# returns an array of the logits' shape.
#
# Two things to watch:
# - the loss is a *mean* over the $N$ positions;
# - logits can be large (the checker uses values near 1000): $e^{1000}$ overflows. Softmax does not change
#   when you subtract the same number from a whole row, so subtract each row's maximum first.
#
# <details><summary>Stuck?</summary>
#
# $\log p_{n,t} = z_{nt} - \log \sum_{c'} e^{z_{nc'}}$, so
# $\partial \log p_{n,t} / \partial z_{nc} = [c = t] - p_{nc}$.
# </details>

# %%
import numpy as np

from tinylora.exercises import check_cross_entropy_backward

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def cross_entropy_backward(logits, targets):
    """Gradient of the mean cross-entropy. logits (N, C) float, targets (N,) int -> dlogits (N, C)."""
    raise NotImplementedError("Exercise 3: the gradient of the mean cross-entropy")


# %% tags=["exercise-check"]
check_cross_entropy_backward(cross_entropy_backward)

# %% [markdown]
# ## Going further
#
# Each row of your answer sums to zero. Why? What does that say about adding a constant to every logit?
