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
# # Exercise 8: counting trainable parameters
#
# *About 5 minutes; 1 point.*
#
# Fine-tuning a layer with weight $(d_{out}, d_{in})$ trains $d_{out} \cdot d_{in}$ numbers. LoRA of rank $r$
# trains only $A$ $(r, d_{in})$ and $B$ $(d_{out}, r)$:
#
# $$\text{trainable} = \sum_{\text{adapted layers}} r\,(d_{in} + d_{out}).$$
#
# **Write** `lora_trainable_params(layer_shapes, r)`: `layer_shapes` is a list of `(d_out, d_in)` pairs, one
# per adapted layer; return an `int`.
#
# The checker builds real tinylora GPTs, adapts them with `apply_lora`, and compares your count with
# `tinylora.lora.count_parameters(model)`. For example the "nano" GPT with `q_proj` and `v_proj` adapted in
# its 2 blocks (four $32 \times 32$ layers) at $r = 4$ trains $4 \cdot 4 \cdot (32 + 32) = 1024$ parameters.

# %%
import numpy as np

from tinylora.exercises import check_lora_trainable_params

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def lora_trainable_params(layer_shapes, r):
    """Number of LoRA parameters: layer_shapes is a list of (d_out, d_in); returns an int."""
    raise NotImplementedError("Exercise 8: count LoRA's trainable parameters")


# %% tags=["exercise-check"]
check_lora_trainable_params(lora_trainable_params)

# %% [markdown]
# ## Going further
#
# For a square $d \times d$ layer, at which rank does LoRA train as many parameters as full fine-tuning?
