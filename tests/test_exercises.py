"""The classroom exercises: the registry, malformed outputs, the notebooks and their solutions.

tests/test_exercise_checkers.py holds the negative controls (solution, stub, every listed wrong
answer) and the random-case and staged-hint tests. Here: a malformed output (None, a Tensor, a
string, an extra axis, NaN) gets a message naming what was expected; check_all; every exercise
has a notebook with its stub and its check call, a solution the notebooks never import, and one
notebook is executed end to end.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tinylora import Tensor
from tinylora.exercises import (
    CHECKERS,
    EXERCISES,
    ExerciseNotDone,
    check_all,
    functions_needed,
    reset_failures,
)

EXERCISE_DIR = Path(__file__).resolve().parent.parent / "notebooks" / "exercises"
NUMBERS = sorted(EXERCISES)


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"_exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@functools.cache
def solution(number: int):
    return load_module(EXERCISE_DIR / "solutions" / f"{number:02d}_{EXERCISES[number].name}.py")


def solution_functions(number: int) -> list:
    return [getattr(solution(number), name) for name in functions_needed(number)]


def run_checker(number: int, *functions):
    return CHECKERS[number](*functions, seed=0, hint=True)


@pytest.fixture(autouse=True)
def fresh_stages():
    reset_failures()
    yield
    reset_failures()


# ---- check_all and the registry -----------------------------------------------------------
def test_check_all_runs_every_exercise_a_module_defines_and_returns_those_that_pass():
    merged = type("Namespace", (), {name: staticmethod(fn) for n in (1, 7)
                                    for name, fn in zip(functions_needed(n), solution_functions(n))})
    merged.causal_mask = staticmethod(lambda T: np.ones((T, T), dtype=bool))      # exercise 5, wrong
    assert check_all(merged) == [1, 7]


def test_every_exercise_has_points_minutes_a_title_and_a_formula():
    for number, ex in EXERCISES.items():
        assert ex.number == number and ex.points >= 1 and ex.minutes >= 5
        assert ex.title and ex.hint and ex.formula and ex.checker == CHECKERS[number].__name__


def test_check_all_refuses_a_module_without_any_exercise_function():
    with pytest.raises(ValueError, match="defines none of the exercise functions"):
        check_all(np)


def test_exercise_not_done_is_an_assertion_error():
    assert issubclass(ExerciseNotDone, AssertionError)


def test_the_package_defines_the_exercise_record_and_the_registry_once():
    package = Path(__file__).resolve().parent.parent / "tinylora"
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            names = [node.name] if isinstance(node, ast.ClassDef) else \
                [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            found += [(name, path.relative_to(package).as_posix()) for name in names
                      if name in ("Exercise", "EXERCISES")]
    assert sorted(found) == [("EXERCISES", "exercises/registry.py"), ("Exercise", "exercises/engine.py")]


# ---- malformed outputs get a message naming what was expected ----------------------------------
def corrupt(value, how: str):
    if how == "None":
        return None
    if how == "a Tensor":   # (a list of str becomes a Tensor of its length)
        return Tensor(np.zeros(len(value)) if isinstance(value, list) else np.asarray(value))
    if how == "a string":
        return "oops"
    if how == "an extra axis":
        return np.asarray(value)[None]
    if how == "NaN":
        return np.full(np.shape(value), np.nan)
    raise ValueError(how)


BAD_OUTPUTS = {  # how -> the words the message must contain
    "None": "None (is a `return` statement missing?)",
    "a Tensor": "tinylora Tensor",
    "a string": "got str",
    "an extra axis": "should",
    "NaN": "",
}


def corrupted(fn, how: str):
    @functools.wraps(fn)
    def wrapper(*args):
        out = fn(*args)
        return tuple(corrupt(v, how) for v in out) if isinstance(out, tuple) else corrupt(out, how)
    return wrapper


@pytest.mark.parametrize("how", BAD_OUTPUTS)
@pytest.mark.parametrize("number", [n for n in NUMBERS if n != 15])   # 15 returns a Tensor: below
def test_a_malformed_output_gets_a_message_naming_what_was_expected(number, how):
    functions = [corrupted(fn, how) for fn in solution_functions(number)]
    with pytest.raises(AssertionError) as info:
        run_checker(number, *functions)
    message = str(info.value)
    assert BAD_OUTPUTS[how] in message
    assert f"Exercise {number} (" in message
    assert any(words in message for words in ("should", "contains NaN", "expected a finite"))


def test_bare_none_for_a_tuple_result_asks_for_the_tuple():
    with pytest.raises(AssertionError, match=r"should return a tuple of 3 values \(dx, dweight, dbias\); got "
                                             r"None"):
        run_checker(4, lambda x, w, g, eps: None)


def test_an_op_that_returns_an_array_instead_of_a_tensor_is_told_to_use_from_op():
    with pytest.raises(AssertionError, match=r"should return a tinylora Tensor \(made with Tensor.from_op\)"):
        run_checker(15, lambda x: np.logaddexp(0, x.data))


def test_a_function_that_changes_its_input_in_place_is_told_so():
    def merge_in_place(W0, A, B, alpha, r):
        W0 += (alpha / r) * (B @ A)
        return W0
    with pytest.raises(AssertionError, match="changed its input W0 in place"):
        run_checker(7, merge_in_place, solution_functions(7)[1])


def test_passing_the_result_instead_of_the_function_is_explained():
    with pytest.raises(AssertionError, match="without parentheses"):
        run_checker(5, np.ones((3, 3), dtype=bool))


# ---- the notebooks -----------------------------------------------------------------------------
# (tests/test_notebooks.py checks that each .ipynb is stripped and matches its jupytext .py source)
def notebook_path(number: int) -> Path:
    return EXERCISE_DIR / f"{number:02d}_{EXERCISES[number].name}.ipynb"


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("number", NUMBERS)
def test_every_exercise_has_a_notebook_with_a_stub_and_the_check_call(number):
    cells = code_cells(notebook_path(number))
    call = f"{CHECKERS[number].__name__}({', '.join(functions_needed(number))})"
    assert any(f'raise NotImplementedError("Exercise {number}:' in c for c in cells)
    assert any(c.strip() == call for c in cells)
    assert (EXERCISE_DIR / "solutions" / f"{number:02d}_{EXERCISES[number].name}.py").exists()


def test_notebooks_never_import_the_solutions():
    for number in NUMBERS:
        assert "solutions" not in notebook_path(number).read_text()


@pytest.fixture(scope="module")
def causal_mask_notebook():
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    return nbformat.read(notebook_path(5), as_version=4)


def execute(nb):
    from nbclient import NotebookClient
    NotebookClient(nb, kernel_name="python3", timeout=60,
                   resources={"metadata": {"path": str(EXERCISE_DIR)}}).execute()
    return nb


@pytest.mark.slow
def test_running_a_notebook_with_the_stub_untouched_ends_in_the_friendly_error(causal_mask_notebook):
    from nbclient.exceptions import CellExecutionError
    with pytest.raises(CellExecutionError) as info:
        execute(causal_mask_notebook)
    assert "ExerciseNotDone" in str(info.value)
    assert "Exercise 5 is not implemented yet" in str(info.value)


@pytest.mark.slow
def test_running_a_notebook_with_the_solution_pasted_into_the_stub_passes(causal_mask_notebook):
    stub = next(c for c in causal_mask_notebook.cells if "exercise-stub" in c.metadata.get("tags", []))
    stub.source = (EXERCISE_DIR / "solutions" / "05_causal_mask.py").read_text()
    nb = execute(causal_mask_notebook)
    check = next(c for c in nb.cells if "exercise-check" in c.metadata.get("tags", []))
    printed = "".join(o.get("text", "") for o in check.outputs if o.output_type == "stream")
    assert "✓ Exercise 5 passed (6 cases, seed " in printed
