"""The list of exercises (``EXERCISES``: number -> ``Exercise``), their checkers, and ``check_all``.

Each ``Exercise`` carries its points and a student's working time on a lab machine (``minutes``);
``CHECKERS`` maps each number to its ``check_...`` function.

>>> EXERCISES[7].points, functions_needed(7)
(1, ['merge', 'unmerge'])
"""
from __future__ import annotations

from .adapters import (
    LORA_FORWARD,
    MERGE_UNMERGE,
    SUBSPACE,
    TRAINABLE,
    check_lora_forward,
    check_lora_trainable_params,
    check_merge_unmerge,
    check_subspace_similarity,
)
from .attention import (
    ATTENTION_BACKWARD,
    ATTENTION_WITH_CACHE,
    CAUSAL_MASK,
    MASKED_ATTENTION,
    check_attention_backward,
    check_attention_with_cache,
    check_causal_mask,
    check_masked_attention_weights,
)
from .backprop import (
    CROSS_ENTROPY,
    LAYER_NORM,
    MATMUL,
    RMS_NORM,
    SOFTMAX,
    UNBROADCAST,
    check_cross_entropy_backward,
    check_layer_norm_backward,
    check_matmul_backward,
    check_rms_norm_backward,
    check_softmax_backward,
    check_unbroadcast,
)
from .engine import run
from .llm import BPE_MERGE, QUANTIZE, ROPE, check_bpe_merge, check_quantize_4bit, check_rope
from .merging import DARE, TIES, check_dare_linear, check_ties_merge
from .training import ADAMW, SOFTPLUS, check_adamw_step, check_softplus_op
from .variants import DORA, LORA_BACKWARD, RSLORA, check_dora, check_lora_backward, check_rslora_scaling

__all__ = ["EXERCISES", "CHECKERS", "functions_needed", "check_all", "total_points"]

_ALL = [
    (UNBROADCAST, check_unbroadcast), (MATMUL, check_matmul_backward),
    (CROSS_ENTROPY, check_cross_entropy_backward), (LAYER_NORM, check_layer_norm_backward),
    (CAUSAL_MASK, check_causal_mask), (LORA_FORWARD, check_lora_forward),
    (MERGE_UNMERGE, check_merge_unmerge), (TRAINABLE, check_lora_trainable_params),
    (SUBSPACE, check_subspace_similarity), (MASKED_ATTENTION, check_masked_attention_weights),
    (LORA_BACKWARD, check_lora_backward), (SOFTMAX, check_softmax_backward),
    (ATTENTION_BACKWARD, check_attention_backward), (ADAMW, check_adamw_step), (SOFTPLUS, check_softplus_op),
    (RSLORA, check_rslora_scaling), (DORA, check_dora), (RMS_NORM, check_rms_norm_backward),
    (ROPE, check_rope),
    (BPE_MERGE, check_bpe_merge), (ATTENTION_WITH_CACHE, check_attention_with_cache),
    (QUANTIZE, check_quantize_4bit), (TIES, check_ties_merge), (DARE, check_dare_linear),
]
EXERCISES = {ex.number: ex for ex, _ in _ALL}
CHECKERS = {ex.number: checker for ex, checker in _ALL}


def functions_needed(number: int) -> list[str]:
    """The names of the functions exercise ``number`` asks for, in the order its checker takes them."""
    return EXERCISES[number].functions


def total_points() -> int:
    return sum(ex.points for ex in EXERCISES.values())


def check_all(module, seed: int | None = None) -> list[int]:
    """Run every exercise whose functions ``module`` defines; return the numbers that pass.

    ``module`` is anything with attributes: a solution module, or a namespace of the student's
    functions. Exercises it does not define are skipped; ValueError when it defines none.
    """
    passed, tried = [], 0
    for number, ex in EXERCISES.items():
        fns = [getattr(module, name, None) for name in ex.functions]
        if all(callable(fn) for fn in fns):
            tried += 1
            result = run(ex, fns, seed)
            print(f"{'✓' if result.passed else '✗'} Exercise {number} ({ex.title})")
            if result.passed:
                passed.append(number)
    if not tried:
        wanted = ", ".join(name for ex in EXERCISES.values() for name in ex.functions)
        raise ValueError(f"check_all: {getattr(module, '__name__', module)!r} "
                         f"defines none of the exercise functions ({wanted})")
    return passed
