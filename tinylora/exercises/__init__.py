"""Classroom exercises: the student writes one function on NumPy arrays, a checker grades it.

Each exercise has a notebook in ``notebooks/exercises/`` that states the math, holds a stub
that raises ``NotImplementedError("Exercise N: ...")``, and ends with ``check_<name>(fn)``.
A checker runs the student's function on several float64 cases with awkward shapes and
computes the expected answer with tinylora's own ops (the engine's backward, ``functional``,
``LoRALinear``, ``count_parameters``, ``analysis``). It prints ``✓ Exercise N passed (k cases)``
and returns True, or raises AssertionError naming the case, the first wrong element
(expected vs got) and a hint. The hint is targeted: the checker also computes the usual wrong
answers (a missing transpose, a forgotten 1/N or alpha/r, a mask off by one, ...) and says
which one the student's output matches. A stub that still raises NotImplementedError gets
``ExerciseNotDone``, a friendly AssertionError.

The grading engine is ``engine``; the checkers live by theme in ``backprop`` (1-4),
``attention`` (5, 10) and ``adapters`` (6-9); ``registry`` lists them all (``EXERCISES``).

>>> import numpy as np
>>> check_causal_mask(lambda T: np.tril(np.ones((T, T), dtype=bool)))
✓ Exercise 5 passed (4 cases)
True
"""
from __future__ import annotations

from .adapters import (
    check_lora_forward,
    check_lora_trainable_params,
    check_merge_unmerge,
    check_subspace_similarity,
)
from .attention import check_causal_mask, check_masked_attention_weights
from .backprop import (
    check_cross_entropy_backward,
    check_layer_norm_backward,
    check_matmul_backward,
    check_unbroadcast,
)
from .engine import Case, Exercise, ExerciseNotDone, Output
from .registry import EXERCISES, check_all, functions_needed

__all__ = ["ExerciseNotDone", "EXERCISES", "check_all", "functions_needed", "check_unbroadcast",
           "check_matmul_backward", "check_cross_entropy_backward", "check_layer_norm_backward",
           "check_causal_mask", "check_lora_forward", "check_merge_unmerge", "check_lora_trainable_params",
           "check_subspace_similarity", "check_masked_attention_weights", "Exercise", "Case", "Output"]
