"""The ``arithmetic`` corpus (target with an accuracy): lines such as ``17+25=42``.

Lines "a+b=c" or "a-b=c" with two-digit a and b (10..99); subtraction keeps a >= b so c >= 0.
A fixed 10% of all problems is held out: the corpus never contains them, so accuracy measured
on make_arithmetic_problems(split="test") is on problems the model has never seen.

>>> import random
>>> next(units(random.Random(0)))
'62+11=73\\n'
"""
from __future__ import annotations

import functools
import random
import re
from typing import Iterator, Sequence

from .._validate import check_choice, check_int

HOLDOUT_SEED = 1234  # fixed forever: changing it would change the test set
HOLDOUT_FRACTION = 0.1
_PROMPT_PATTERN = re.compile(r"^(\d+)([+-])(\d+)=$")


@functools.lru_cache(maxsize=None)
def prompt_split() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """All 12,195 prompts such as "17+25=", split once into (train, test) by a fixed shuffle.

    >>> train, test = prompt_split()
    >>> len(train), len(test)
    (10976, 1219)
    """
    prompts = [f"{a}+{b}=" for a in range(10, 100) for b in range(10, 100)]
    prompts += [f"{a}-{b}=" for a in range(10, 100) for b in range(10, a + 1)]
    random.Random(HOLDOUT_SEED).shuffle(prompts)
    n_test = int(len(prompts) * HOLDOUT_FRACTION)
    return tuple(prompts[n_test:]), tuple(prompts[:n_test])


def arithmetic_answer(prompt: str) -> str:
    """The correct completion of a prompt such as "17+25=" (without the newline).

    >>> arithmetic_answer("17+25=")
    '42'
    >>> arithmetic_answer("60-8=")
    '52'
    """
    match = _PROMPT_PATTERN.match(prompt)
    if match is None:
        raise ValueError(f"not an arithmetic prompt like '17+25=': {prompt!r}")
    a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
    return str(a + b if op == "+" else a - b)


def make_arithmetic_problems(n: int, seed: int = 0, split: str = "test") -> list[tuple[str, str]]:
    """``n`` distinct (prompt, answer) pairs such as ("17+25=", "42"), drawn with ``seed``.

    ``split="test"`` (default) draws from the held-out problems the corpus never contains
    (1219 of them); ``split="train"`` from the problems the corpus is made of.

    >>> make_arithmetic_problems(2, seed=0)
    [('17+25=', '42'), ('97+40=', '137')]
    """
    check_choice("split", split, ("train", "test"), where="make_arithmetic_problems")
    pool = prompt_split()[0 if split == "train" else 1]
    n = check_int("n", n, low=1, high=len(pool), where=f"make_arithmetic_problems(split={split!r})")
    prompts = random.Random(seed).sample(pool, n)
    return [(p, arithmetic_answer(p)) for p in prompts]


def score_arithmetic(prompts_and_completions: Sequence[tuple[str, str]]) -> float:
    """Exact-match accuracy in [0, 1] of model completions, with no model involved.

    Each item is (prompt, completion), where completion is the text the model wrote after the
    prompt. Only the completion's first line counts, so "42\\n17+3..." is read as "42".

    >>> score_arithmetic([("17+25=", "42\\n"), ("50-8=", "41\\n")])
    0.5
    """
    if len(prompts_and_completions) == 0:
        raise ValueError("score_arithmetic needs at least one (prompt, completion) pair")
    correct = sum(completion.split("\n", 1)[0] == arithmetic_answer(prompt)
                  for prompt, completion in prompts_and_completions)
    return correct / len(prompts_and_completions)


def units(r: random.Random) -> Iterator[str]:
    """The corpus as an endless stream of lines "a+b=c\\n", drawn with ``r`` from the train prompts."""
    train = prompt_split()[0]
    while True:
        prompt = r.choice(train)
        yield f"{prompt}{arithmetic_answer(prompt)}\n"
