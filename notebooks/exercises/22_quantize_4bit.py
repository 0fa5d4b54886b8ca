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
# # Exercise 22: 4-bit block quantization
#
# *About 25 minutes; 3 points.*
#
# Quantized LLM files store weights in blocks of 32 consecutive values of a row. Here, each block keeps one
# float scale and 32 signed 4-bit codes (absmax quantization):
#
# $$\text{scale} = \frac{\max |w_{\text{block}}|}{7}, \qquad \text{code} = \mathrm{rint}(w / \text{scale})
# \in \{-7, \ldots, 7\}, \qquad w \approx \text{code} \cdot \text{scale}.$$
#
# An all-zero block gets scale 0 and codes 0. (GGUF's Q4_0 stores code + 8 in each 4-bit nibble and the scale
# as float16; the checker dequantizes your codes with `tinylora.quant.dequantize` through exactly that
# layout.)
#
# **Write** `quantize_4bit(w)` for `w` of shape `(rows, cols)` with `cols` a multiple of 32, returning
# `(codes, scales)`: codes of dtype int8 and `w`'s shape, scales of shape `(rows, cols // 32)`; and
# `dequantize_4bit(codes, scales)`, returning the float64 weights.

# %%
import numpy as np

from tinylora.exercises import check_quantize_4bit

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def quantize_4bit(w):
    """w (rows, cols) -> codes int8 (rows, cols) in -7..7, scales (rows, cols // 32)."""
    raise NotImplementedError("Exercise 22: 4-bit quantization")


def dequantize_4bit(codes, scales):
    """codes (rows, cols), scales (rows, cols // 32) -> w (rows, cols), float64."""
    raise NotImplementedError("Exercise 22: 4-bit dequantization")


# %% tags=["exercise-check"]
check_quantize_4bit(quantize_4bit, dequantize_4bit)

# %% [markdown]
# ## Going further
#
# Quantize a random (64, 256) matrix and measure the round-trip error. How many bits per weight does this
# format cost, counting a float16 scale per block? How does one outlier in a block change its error?
