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
# # Exercise 14: one AdamW step
#
# *About 20 minutes; 2 points.*
#
# AdamW (Loshchilov & Hutter, 2019) keeps two moving averages per weight, $m$ of the gradient and $v$ of
# its square, and decays the weight *apart from* the gradient ("decoupled" weight decay). At step $t$
# (counting from 1), with gradient $g$:
#
# 1. decay: $w \leftarrow w\,(1 - \eta\lambda)$;
# 2. moments: $m \leftarrow \beta_1 m + (1-\beta_1) g$ and $v \leftarrow \beta_2 v + (1-\beta_2) g^2$;
# 3. bias correction: $\hat m = m/(1-\beta_1^t)$, $\hat v = v/(1-\beta_2^t)$ (both averages start at 0,
#    so early on they are too small);
# 4. step: $w \leftarrow w - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)$.
#
# Adam with an L2 penalty instead adds $\lambda w$ to the gradient, which then passes through $m$ and $v$:
# that is not AdamW.
#
# **Write** `adamw_step(w, grad, m, v, t, lr, beta1, beta2, eps, weight_decay)`, which returns the new
# `(w, m, v)` without changing its inputs. The checker compares with `tinylora.optim.AdamW`.

# %%
import numpy as np

from tinylora.exercises import check_adamw_step

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def adamw_step(w, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """One AdamW update at step t (1-based). Arrays w, grad, m, v of one shape -> (w, m, v)."""
    raise NotImplementedError("Exercise 14: one AdamW step")


# %% tags=["exercise-check"]
check_adamw_step(adamw_step)

# %% [markdown]
# ## Going further
#
# At t = 1 with m = v = 0, show that every weight moves by about lr (against the sign of its gradient),
# whatever the gradient's size. What does that say about choosing lr for Adam?
