"""Classroom exercises: the student writes a function on NumPy arrays, a checker grades it.

Each exercise has a notebook in ``notebooks/exercises/`` that states the math, holds a stub that
raises ``NotImplementedError("Exercise N: ...")`` and ends with ``check_<name>(fn)``. A checker
draws fresh random cases on every call (``seed=`` reproduces one), covering the regimes where
plausible mistakes show (several leading axes, ranks that do not divide alpha, scores in the
thousands, long sequences), and computes the expected answers with tinylora's own ops. It prints
``✓ Exercise N passed`` and returns True, or raises AssertionError with a staged message: the
first failure names the case, the output and the first wrong element (expected vs got); from the
second failure on it adds a hint, specific when the answer behaves exactly like one known mistake
(and no other); ``hint=True`` adds the formula. A stub still raising NotImplementedError gets
``ExerciseNotDone``.

The engine is ``engine``; the exercises live by theme in ``backprop``, ``attention``, ``adapters``,
``variants``, ``training``, ``llm`` and ``merging``; ``registry`` lists them (``EXERCISES``, with points and
minutes). ``export`` writes the student edition and ``grader`` grades a folder of submissions.

>>> import numpy as np
>>> check_causal_mask(lambda T: np.tril(np.ones((T, T), dtype=bool)), seed=1)
✓ Exercise 5 passed (6 cases, seed 1)
True
"""
from __future__ import annotations

from .adapters import (
    check_lora_forward,
    check_lora_trainable_params,
    check_merge_unmerge,
    check_subspace_similarity,
)
from .attention import (
    check_attention_backward,
    check_attention_with_cache,
    check_causal_mask,
    check_masked_attention_weights,
)
from .backprop import (
    check_cross_entropy_backward,
    check_layer_norm_backward,
    check_matmul_backward,
    check_rms_norm_backward,
    check_softmax_backward,
    check_unbroadcast,
)
from .engine import Exercise, ExerciseNotDone, Mistake, Output, Part, Result, draw_cases, reset_failures, run
from .llm import check_bpe_merge, check_quantize_4bit, check_rope
from .merging import check_dare_linear, check_ties_merge
from .registry import CHECKERS, EXERCISES, check_all, functions_needed, total_points
from .training import check_adamw_step, check_softplus_op
from .variants import check_dora, check_lora_backward, check_rslora_scaling

__all__ = ["ExerciseNotDone", "EXERCISES", "CHECKERS", "check_all", "functions_needed", "total_points", "run",
           "draw_cases", "reset_failures", "Exercise", "Part", "Mistake", "Output", "Result",
           "check_unbroadcast", "check_matmul_backward", "check_cross_entropy_backward",
           "check_layer_norm_backward", "check_causal_mask", "check_lora_forward", "check_merge_unmerge",
           "check_lora_trainable_params", "check_subspace_similarity", "check_masked_attention_weights",
           "check_lora_backward", "check_softmax_backward", "check_attention_backward", "check_adamw_step",
           "check_softplus_op", "check_rslora_scaling", "check_dora", "check_rms_norm_backward", "check_rope",
           "check_bpe_merge", "check_attention_with_cache", "check_quantize_4bit", "check_ties_merge",
           "check_dare_linear"]
