"""The list of exercises, the functions each one asks for, and ``check_all`` to grade a whole module."""
from __future__ import annotations

import inspect

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

__all__ = ["EXERCISES", "functions_needed", "check_all"]

EXERCISES = {
    1: ("unbroadcast", check_unbroadcast),
    2: ("matmul_backward", check_matmul_backward),
    3: ("cross_entropy_backward", check_cross_entropy_backward),
    4: ("layer_norm_backward", check_layer_norm_backward),
    5: ("causal_mask", check_causal_mask),
    6: ("lora_forward", check_lora_forward),
    7: ("merge_unmerge", check_merge_unmerge),
    8: ("trainable_params", check_lora_trainable_params),
    9: ("subspace_similarity", check_subspace_similarity),
    10: ("masked_attention", check_masked_attention_weights),
}


def functions_needed(number: int) -> list[str]:
    """The names of the functions exercise ``number`` asks for: its checker's parameter names.

    >>> functions_needed(7)
    ['merge', 'unmerge']
    """
    return list(inspect.signature(EXERCISES[number][1]).parameters)


def check_all(module) -> list[int]:
    """Run every exercise whose functions ``module`` defines; return their numbers (raises at a failure).

    ``module`` is anything with attributes: a solution module, or a namespace of the student's functions.
    """
    __tracebackhide__ = True
    passed = []
    for number, (_, checker) in EXERCISES.items():
        fns = [getattr(module, name, None) for name in functions_needed(number)]
        if all(callable(fn) for fn in fns):
            checker(*fns)
            passed.append(number)
    if not passed:
        wanted = ", ".join(name for n in EXERCISES for name in functions_needed(n))
        raise ValueError(f"check_all: {getattr(module, '__name__', module)!r} "
                         f"defines none of the exercise functions ({wanted})")
    return passed
