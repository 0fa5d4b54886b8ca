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
# # Exercise 4: layer-norm backward
#
# *About 30 minutes; 3 points.*
#
# Layer norm works on the last axis of $x$ (size $D$), separately for every row:
#
# $$\mu = \frac{1}{D}\sum_{d} x_d, \qquad \sigma^2 = \frac{1}{D}\sum_{d} (x_d - \mu)^2, \qquad
# \hat{x} = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad y = \hat{x} \odot w + b.$$
#
# Given $g = \partial L / \partial y$ (same shape as $x$), **write**
# `layer_norm_backward(x, weight, grad_out, eps)`, which returns `(dx, dweight, dbias)`:
# - `dweight` and `dbias` have shape $(D,)$: the same $w$ and $b$ serve every row, so their gradients
#   add up over all the leading axes (`x` may be 2-D, 3-D or 4-D);
# - `dx` has the shape of `x`. The hard part: $\mu$ and $\sigma$ depend on $x$ too.
#
# <details><summary>Stuck?</summary>
#
# Let $\hat{g} = g \odot w$ (the gradient that reaches $\hat{x}$) and write $\overline{v}$ for the mean of $v$
# over the last axis. Then
#
# $$\frac{\partial L}{\partial x} = \frac{1}{\sqrt{\sigma^2 + \varepsilon}}
# \left(\hat{g} - \overline{\hat{g}} - \hat{x}\,\overline{\hat{g} \odot \hat{x}}\right).$$
#
# The middle term comes from $\mu$, the last from $\sigma$.
# </details>

# %%
import numpy as np

from tinylora.exercises import check_layer_norm_backward

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def layer_norm_backward(x, weight, grad_out, eps):
    """Gradients of layer norm.

    x (..., D), weight (D,), grad_out (..., D) -> (dx, dweight (D,), dbias (D,)).
    """
    raise NotImplementedError("Exercise 4: the gradients of layer norm")


# %% tags=["exercise-check"]
check_layer_norm_backward(layer_norm_backward)

# %% [markdown]
# ## Going further
#
# Show that every row of `dx` sums to zero. Why must it, given what layer norm does to a row's mean?
