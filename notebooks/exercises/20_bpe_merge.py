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
# # Exercise 20: one BPE merge step
#
# *About 15 minutes; 1 point.*
#
# Byte-pair encoding splits a word into pieces, then applies merge rules in order. One rule is a pair of
# pieces `(a, b)`: wherever piece `a` is directly followed by piece `b`, the two become one piece `a + b`.
# Occurrences are merged left to right and do not overlap: with the rule `("a", "a")`, `a a a` becomes
# `aa a`. A rule is about whole pieces: the pieces `ab c` do not contain the pair `("b", "c")`.
#
# **Write** `merge_pair(parts, pair)`, which returns a new list of str. The checker compares with
# `tinylora.tokenizers.bpe.merge_pair`.

# %%
import numpy as np

from tinylora.exercises import check_bpe_merge

# %% [markdown]
# ## Your turn
#
# Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the check below.
# It draws fresh random inputs on every run (float64 arrays: some with several leading axes, some large) and
# either prints ✓ or says which case failed, which output and element, what it expected and what you
# returned. Run it again after a fix to get a hint; add `hint=True` to see the formula, and `seed=...`
# (printed with every failure) to repeat the same cases.

# %% tags=["exercise-stub"]
def merge_pair(parts, pair):
    """parts (list of str) with every non-overlapping occurrence of pair, left to right, joined."""
    raise NotImplementedError("Exercise 20: one BPE merge step")


# %% tags=["exercise-check"]
check_bpe_merge(merge_pair)

# %% [markdown]
# ## Going further
#
# Apply the rules ("l", "o"), ("lo", "w"), ("e", "r") in that order to list("lower"). What does the order of
# the rules change?
