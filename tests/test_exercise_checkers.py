"""Checkers that are hard to fool: negative controls from the registry, random cases, matching, staged hints.

For every exercise, old and new: the checker passes the teacher's solution, reports the stub as not
done, and fails every wrong answer listed in the registry with that mistake's own hint. The cases
are drawn afresh on every call (the same seed gives the same cases), they cover the regimes where
the mistakes show, and a hint is given only when the answer behaves like exactly one mistake.
"""
from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylora.exercises import (
    CHECKERS,
    EXERCISES,
    Exercise,
    ExerciseNotDone,
    Mistake,
    Output,
    Part,
    draw_cases,
    reset_failures,
    run,
)

SOLUTIONS = Path(__file__).resolve().parent.parent / "notebooks" / "exercises" / "solutions"
NUMBERS = sorted(EXERCISES)
SEEDS = (0, 1)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the unstable wrong answers overflow


@functools.cache
def solution_module(number: int):
    path = SOLUTIONS / f"{number:02d}_{EXERCISES[number].name}.py"
    spec = importlib.util.spec_from_file_location(f"_solution_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def solution(number: int) -> list:
    return [getattr(solution_module(number), name) for name in EXERCISES[number].functions]


def stub(number: int, name: str):
    def fn(*args):
        raise NotImplementedError(f"Exercise {number}: write {name}")
    fn.__name__ = name
    return fn


MISTAKES = [(n, i, m) for n in NUMBERS for i, part in enumerate(EXERCISES[n].parts) for m in part.mistakes]


@pytest.fixture(autouse=True)
def fresh_stages():
    reset_failures()
    yield
    reset_failures()


# ---- negative controls ---------------------------------------------------------------------
@pytest.mark.parametrize("number", NUMBERS)
def test_the_checker_passes_the_solution_on_two_seeds_and_prints_a_tick(number, capsys):
    for seed in SEEDS:
        assert CHECKERS[number](*solution(number), seed=seed) is True
        assert f"✓ Exercise {number} passed" in capsys.readouterr().out


@pytest.mark.parametrize("number", NUMBERS)
def test_the_checker_reports_the_stub_as_not_done(number):
    with pytest.raises(ExerciseNotDone, match=f"Exercise {number} is not implemented yet: write "):
        CHECKERS[number](*[stub(number, name) for name in EXERCISES[number].functions])


@pytest.mark.parametrize("number", NUMBERS)
def test_every_exercise_lists_at_least_three_wrong_answers(number):
    assert sum(len(part.mistakes) for part in EXERCISES[number].parts) >= 3


@pytest.mark.parametrize("number, index, mistake", MISTAKES,
                         ids=[f"{n}-{m.name}" for n, _, m in MISTAKES])
def test_a_wrong_answer_fails_with_its_own_hint(number, index, mistake):
    ex = EXERCISES[number]
    for seed in SEEDS:
        fns = solution(number)
        fns[index] = mistake.wrong
        result = run(ex, fns, seed)
        assert not result.passed and not result.not_done
        assert result.mistake == mistake.name, result.verdict
        assert mistake.hint in result.message(ex, stage=2)


def test_the_mistake_hints_of_one_part_are_all_different():
    repeated = [(n, i) for n in NUMBERS for i, p in enumerate(EXERCISES[n].parts)
                if len({m.hint for m in p.mistakes}) != len(p.mistakes)]
    assert repeated == []


# ---- a hint only for the one mistake the answer matches ------------------------------------
def toy(*mistakes) -> Exercise:
    part = Part("double", (Output("y"),), lambda rng, k: {"x": rng.standard_normal(k + 2)}, lambda x: 2 * x,
                tuple(mistakes))
    return Exercise(0, "double", "double", (part,), hint="GENERAL", formula="y = 2 x")


def test_two_mistakes_with_the_same_output_but_different_hints_give_only_the_general_hint():
    ex = toy(Mistake("a", lambda x: x, "HINT A"), Mistake("b", lambda x: x + 0.0, "HINT B"))
    result = run(ex, [lambda x: x], seed=3)
    assert (result.mistake, result.hint) == (None, "GENERAL")


def test_an_answer_that_matches_a_mistake_on_one_case_only_gets_the_general_hint():
    ex = toy(Mistake("a", lambda x: x, "HINT A"))
    result = run(ex, [lambda x: x if len(x) == 2 else 3 * x], seed=3)   # like "a" on case 1, not after
    assert (result.mistake, result.hint) == (None, "GENERAL")


def test_an_answer_with_two_mistakes_at_once_gets_no_specific_hint():
    ex = EXERCISES[6]
    result = run(ex, [lambda x, W0, A, B, alpha, r: x @ W0 + x @ A.T @ B.T], seed=0)  # untransposed, unscaled
    assert result.mistake is None and result.hint == ex.hint


# ---- staged messages -----------------------------------------------------------------------
def wrong_lora_forward(x, W0, A, B, alpha, r):
    return x @ W0.T + x @ A.T @ B.T


def failure(seed=5, **kw) -> str:
    with pytest.raises(AssertionError) as info:
        CHECKERS[6](wrong_lora_forward, seed=seed, **kw)
    return str(info.value)


def test_the_first_failure_says_what_is_wrong_where_but_gives_no_hint():
    first = failure()
    assert "h is wrong at" in first and "the first is [" in first and "expected [" in first
    assert "Hint:" not in first and "Formula:" not in first


def test_the_second_failure_adds_the_mistakes_hint_but_not_the_formula():
    failure()
    second = failure()
    assert "Hint: forgot the scaling" in second and "Formula:" not in second


def test_the_formula_comes_only_on_request():
    asked = failure(hint=True)
    assert f"Formula: {EXERCISES[6].formula}" in asked


def test_a_failure_names_its_seed_and_the_call_that_reproduces_it():
    message = failure(seed=1234)
    assert "seed 1234" in message
    assert "check_lora_forward(lora_forward, seed=1234)" in message
    reset_failures()
    assert failure(seed=1234) == message


# ---- random cases --------------------------------------------------------------------------
def fingerprint(cases) -> list:
    return [[{k: (v.tobytes() if isinstance(v, np.ndarray) else repr(v)) for k, v in args.items()}
             for args in part] for part in cases]


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(NUMBERS), st.integers(0, 10**6), st.integers(0, 10**6))
def test_cases_are_the_same_for_one_seed_and_differ_between_seeds(number, seed, other):
    ex = EXERCISES[number]
    assert fingerprint(draw_cases(ex, seed)) == fingerprint(draw_cases(ex, seed))
    if seed != other:
        assert fingerprint(draw_cases(ex, seed)) != fingerprint(draw_cases(ex, other))


def test_a_check_without_a_seed_draws_a_new_seed_on_every_call():
    seeds = {run(EXERCISES[5], solution(5)).seed for _ in range(5)}
    assert len(seeds) > 1


def _leading_axes(cases):
    return max(a["grad"].ndim - len(a["shape"]) for a in cases[0])


def _alpha_not_divisible(cases):
    return any(isinstance(a["alpha"], int) and a["alpha"] % a["r"] for a in cases[0])


def _largest(key):
    return lambda cases: max(float(np.abs(a[key]).max()) for a in cases[0])


def _longest(key, axis):
    return lambda cases: max(a[key].shape[axis] for a in cases[0])


REGIMES = {  # exercise -> (what is measured over one call's cases, the least value it must reach)
    "more than one extra leading axis (1)": (1, _leading_axes, 2),
    "several leading axes in RMSNorm backward (18)": (18, lambda c: max(a["x"].ndim for a in c[0]), 4),
    "an alpha that r does not divide (6)": (6, _alpha_not_divisible, True),
    "an alpha that r does not divide (11)": (11, _alpha_not_divisible, True),
    "an alpha that r does not divide (7)": (7, _alpha_not_divisible, True),
    "logits in the thousands (3)": (3, _largest("logits"), 800),
    "scores in the thousands (10)": (10, _largest("scores"), 800),
    "inputs in the thousands (12)": (12, _largest("x"), 800),
    "a spread, not only a shift (3)": (3, lambda c: max(np.ptp(a["logits"], -1).max() for a in c[0]), 100),
    "masks longer than 16 (5)": (5, lambda c: max(a["T"] for a in c[0]), 41),
    "sequences longer than 16 (10)": (10, _longest("scores", -1), 17),
    "a cache longer than 16 (21)": (21, _longest("k_cache", 2), 70),
    "sequences longer than 16 (19)": (19, _longest("x", 2), 40),
    "a fresh adapter with B = 0 (11)": (11, lambda c: any(not a["B"].any() for a in c[0]), True),
}


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("seed", [0, 7, 99])
def test_every_call_covers_the_edge_regimes(regime, seed):
    number, measure, least = REGIMES[regime]
    value = measure(draw_cases(EXERCISES[number], seed))
    assert value >= least if not isinstance(least, bool) else value is least


def test_at_step_0_the_lora_backward_gives_a_zero_dA_and_a_nonzero_dB():
    args = next(a for a in draw_cases(EXERCISES[11], 5)[0] if not a["B"].any())
    dA, dB = EXERCISES[11].parts[0].reference(**args)
    assert np.all(dA == 0) and np.abs(dB).max() > 0.1


@pytest.mark.parametrize("kwargs, error, words", [
    ({"seed": "7"}, TypeError, "seed must be an int, got '7'"),
    ({"seed": -1}, ValueError, "seed must be a non-negative int, got -1"),
    ({"hint": "yes"}, TypeError, "hint must be True or False, got 'yes'"),
])
def test_a_bad_seed_or_hint_is_refused_with_its_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        CHECKERS[5](*solution(5), **kwargs)


def test_the_teaching_guide_states_how_many_mistakes_the_registry_lists():
    """docs/teaching.md counts the wrong implementations with hints; the count must be the registry's."""
    import re
    counts = [sum(len(part.mistakes) for part in ex.parts) for ex in EXERCISES.values()]
    text = (Path(__file__).resolve().parents[1] / "docs" / "teaching.md").read_text()
    least, total = re.search(r"at least (\w+) per exercise, (\d+) in all", text).groups()
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert (words.index(least), int(total)) == (min(counts), sum(counts))
