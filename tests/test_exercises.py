"""The classroom exercises: every checker passes the solution and fails stubs, wrong answers and bad outputs.

A checker that never fails teaches nothing, so each exercise is tried with its solution (must
pass), its stub (the friendly "not implemented" message), plausible wrong answers (the targeted
hint) and malformed outputs (a message naming what was expected). Every exercise has a notebook
with its stub and its check call, and one is executed end to end.
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
from tinylora.exercises import EXERCISES, ExerciseNotDone, check_all, functions_needed

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
    name = EXERCISES[number][0]
    return load_module(EXERCISE_DIR / "solutions" / f"{number:02d}_{name}.py")


def solution_functions(number: int) -> list:
    return [getattr(solution(number), name) for name in functions_needed(number)]


def run_checker(number: int, *functions):
    return EXERCISES[number][1](*functions)


# ---- the solutions pass ------------------------------------------------------------------------
@pytest.mark.parametrize("number", NUMBERS)
def test_checker_passes_the_solution_and_prints_a_tick(number, capsys):
    assert run_checker(number, *solution_functions(number)) is True
    assert f"✓ Exercise {number} passed" in capsys.readouterr().out


def test_check_all_runs_every_exercise_a_module_defines():
    merged = type("Namespace", (), {name: staticmethod(fn) for n in (1, 7)
                                    for name, fn in zip(functions_needed(n), solution_functions(n))})
    assert check_all(merged) == [1, 7]


def test_check_all_refuses_a_module_without_any_exercise_function():
    with pytest.raises(ValueError, match="defines none of the exercise functions"):
        check_all(np)


# ---- stubs get the friendly message ------------------------------------------------------------
def stub_for(number: int, name: str):
    def stub(*args):
        raise NotImplementedError(f"Exercise {number}: write {name}")
    stub.__name__ = name
    return stub


@pytest.mark.parametrize("number", NUMBERS)
def test_a_stub_that_raises_not_implemented_gets_the_friendly_message(number):
    stubs = [stub_for(number, name) for name in functions_needed(number)]
    with pytest.raises(ExerciseNotDone, match=f"Exercise {number} is not implemented yet: write "
                                              f"{stubs[0].__name__}\\. Replace"):
        run_checker(number, *stubs)


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


# ---- plausible wrong answers get their hint ----------------------------------------------------
def _sum_to(grad, shape, reduce):
    lead = grad.ndim - len(shape)
    ones = tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    return reduce(grad, tuple(range(lead)) + ones)


def _softmax(x, axis=-1, stable=True):
    # the unstable and the fully masked ones are meant to fail
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True) if stable else x)
        return e / e.sum(axis=axis, keepdims=True)


def _ln_parts(x, eps):
    centred = x - x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt((centred ** 2).mean(axis=-1, keepdims=True) + eps)
    return centred * rstd, rstd, tuple(range(x.ndim - 1))


def _ln_dx(g, xhat, rstd):
    return rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))


def _ln_constants(x, w, g, eps):     # mean and variance treated as constants
    xhat, rstd, rows = _ln_parts(x, eps)
    return g * w * rstd, (g * xhat).sum(axis=rows), g.sum(axis=rows)


def _ln_no_weight(x, w, g, eps):
    xhat, rstd, rows = _ln_parts(x, eps)
    return _ln_dx(g, xhat, rstd), (g * xhat).sum(axis=rows), g.sum(axis=rows)


def _ln_dweight_from_x(x, w, g, eps):
    xhat, rstd, rows = _ln_parts(x, eps)
    return _ln_dx(g * w, xhat, rstd), (g * x).sum(axis=rows), g.sum(axis=rows)


def _ln_sum_axis0(x, w, g, eps):
    xhat, rstd, _ = _ln_parts(x, eps)
    return _ln_dx(g * w, xhat, rstd), (g * xhat).sum(axis=0), g.sum(axis=0)


def _ln_eps_outside(x, w, g, eps):
    xhat, rstd, rows = _ln_parts(x, 0.0)
    return _ln_dx(g * w, xhat, rstd), (g * xhat).sum(axis=rows), g.sum(axis=rows)


def _masked(scores, k=1, fill=-np.inf):
    T = scores.shape[-1]
    return np.where(np.triu(np.ones((T, T), dtype=bool), k=k), fill, scores)


def _merge_in_place(W0, A, B, alpha, r):
    W0 += (alpha / r) * (B @ A)
    return W0


def _svd_rows(A, i):
    return np.linalg.svd(A, full_matrices=False)[2][:i]


def _cross_entropy_mean(logits, targets, stable=True):
    n, c = logits.shape
    return (_softmax(logits, stable=stable) - np.eye(c)[targets]) / n


WRONG_ANSWERS = {
    "unbroadcast with mean instead of sum": (
        1, [lambda g, s: _sum_to(g, s, lambda a, ax: a.mean(axis=ax, keepdims=True)).reshape(s)], "not mean"),
    "unbroadcast without keepdims": (
        1, [lambda g, s: _sum_to(g, s, lambda a, ax: a.sum(axis=ax))], "keepdims=True"),
    "unbroadcast of the leading axes only": (
        1, [lambda g, s: g.sum(axis=tuple(range(g.ndim - len(s))))], "the axes where `shape` has a 1"),
    "matmul backward missing a transpose": (
        2, [lambda a, b, g: (g @ b, a.T @ g)], "missing transpose: grad_a = grad_out @ bᵀ"),
    "matmul backward in the wrong order": (
        2, [lambda a, b, g: (a.T @ g, g @ b.T)], "you returned (grad_b, grad_a)"),
    "matmul backward with grad_b transposed": (
        2, [lambda a, b, g: (g @ b.T, g.T @ a)], "you returned the transpose of grad_b"),
    "cross-entropy backward without the 1/N": (
        3, [lambda z, t: _cross_entropy_mean(z, t) * len(t)], "forgot the 1/N of the mean"),
    "cross-entropy backward with the wrong sign": (
        3, [lambda z, t: -_cross_entropy_mean(z, t)], "wrong sign"),
    "cross-entropy backward without max subtraction": (
        3, [lambda z, t: _cross_entropy_mean(z, t, stable=False)], "subtract each row's max"),
    "layer-norm backward with mean and variance held constant": (
        4, [_ln_constants], "treated them as constants"),
    "layer-norm backward forgetting the weight in dx": (4, [_ln_no_weight], "forgot the weight"),
    "layer-norm backward with dweight from x": (4, [_ln_dweight_from_x], "not by x"),
    "layer-norm backward summing axis 0 only": (4, [_ln_sum_axis0], "not only axis 0"),
    "layer-norm backward with eps outside the root": (4, [_ln_eps_outside], "inside the square root"),
    "causal mask without the diagonal": (
        5, [lambda T: np.tril(np.ones((T, T), dtype=bool), k=-1)], "off by one"),
    "causal mask transposed": (5, [lambda T: np.triu(np.ones((T, T), dtype=bool))], "transposed"),
    "causal mask of ints": (5, [lambda T: np.tril(np.ones((T, T), dtype=int))], "dtype bool"),
    "lora forward without the scaling": (
        6, [lambda x, W0, A, B, alpha, r: x @ W0.T + x @ A.T @ B.T], "forgot the scaling"),
    "lora forward with r over alpha": (
        6, [lambda x, W0, A, B, alpha, r: x @ W0.T + (r / alpha) * x @ A.T @ B.T], "not r/alpha"),
    "lora forward without the frozen path": (
        6, [lambda x, W0, A, B, alpha, r: (alpha / r) * x @ A.T @ B.T], "forgot the frozen path"),
    "lora forward with W0 untransposed": (
        6, [lambda x, W0, A, B, alpha, r: x @ W0 + (alpha / r) * x @ A.T @ B.T], "x @ W0.T is (..., out)"),
    "merge without the scaling": (
        7, [lambda W0, A, B, alpha, r: W0 + B @ A, lambda W, A, B, alpha, r: W - B @ A],
        "forgot the scaling"),
    "merge that changes W0 in place": (
        7, [_merge_in_place, lambda W, A, B, alpha, r: W - (alpha / r) * B @ A], "changed its input W0 in "
                                                                                 "place"),
    "unmerge that adds instead of subtracting": (
        7, [lambda W0, A, B, alpha, r: W0 + (alpha / r) * B @ A,
            lambda W, A, B, alpha, r: W + (alpha / r) * B @ A],
        "unmerge subtracts"),
    "parameter count of r·d_in·d_out": (
        8, [lambda shapes, r: sum(r * o * i for o, i in shapes)], "not r·d_in·d_out"),
    "parameter count of the first layer only": (
        8, [lambda shapes, r: r * sum(shapes[0])], "every layer"),
    "parameter count as a float": (
        8, [lambda shapes, r: sum(r * (o + i) for o, i in shapes) / 1], "should be an int"),
    "subspace similarity without the min(i, j)": (
        9, [lambda A1, A2, i, j: float(np.sum((_svd_rows(A1, i) @ _svd_rows(A2, j).T) ** 2))],
        "divide by min(i, j)"),
    "subspace similarity of the raw rows": (
        9, [lambda A1, A2, i, j: float(np.sum((A1[:i] @ A2[:j].T) ** 2)) / min(i, j)], "right-singular "
                                                                                       "vectors"),
    "subspace similarity without squaring": (
        9, [lambda A1, A2, i, j: float(np.linalg.norm(_svd_rows(A1, i) @ _svd_rows(A2, j).T)) / min(i, j)],
        "square the Frobenius norm"),
    "attention weights zeroed after the softmax": (
        10, [lambda s: np.where(np.isinf(_masked(s)), 0.0, _softmax(s))], "mask *before* the softmax"),
    "attention weights masked with zero": (10, [lambda s: _softmax(_masked(s, fill=0.0))], "not 0"),
    "attention weights masking the diagonal too": (
        10, [lambda s: _softmax(_masked(s, k=0))], "is the diagonal allowed?"),
}


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda s: s.replace(" ", "-"))
def test_a_plausible_wrong_answer_fails_with_its_targeted_hint(wrong):
    number, functions, hint = WRONG_ANSWERS[wrong]
    with pytest.raises(AssertionError) as info:
        run_checker(number, *functions)
    assert not isinstance(info.value, ExerciseNotDone)
    assert hint in str(info.value)
    assert f"Exercise {number} (" in str(info.value)


def test_every_exercise_has_at_least_one_wrong_answer_tested():
    assert {number for number, _, _ in WRONG_ANSWERS.values()} == set(NUMBERS)


def test_a_value_verdict_shows_the_element_and_both_numbers():
    with pytest.raises(AssertionError) as info:
        run_checker(6, lambda x, W0, A, B, alpha, r: x @ W0.T + x @ A.T @ B.T)
    message = str(info.value)
    assert "case 1 of 4" in message and "the first is [" in message
    assert "expected [" in message and "got      [" in message


def test_a_crash_in_the_students_code_names_the_error_the_case_and_the_shapes():
    with pytest.raises(AssertionError, match=r"(?s)case 1 of 4: <lambda>\(x \(5, 6\), W0 \(4, 6\).*raised "
                                             r"ValueError.*"
                                             r"x @ W0.T is \(\.\.\., out\)"):
        run_checker(6, lambda x, W0, A, B, alpha, r: x @ W0 + (alpha / r) * x @ A.T @ B.T)


# ---- malformed outputs get a message naming what was expected ----------------------------------
def corrupt(value, how: str):
    if how == "None":
        return None
    if how == "a Tensor":
        return Tensor(np.asarray(value))
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
@pytest.mark.parametrize("number", NUMBERS)
def test_a_malformed_output_gets_a_message_naming_what_was_expected(number, how):
    functions = [corrupted(fn, how) for fn in solution_functions(number)]
    with pytest.raises(AssertionError) as info:
        run_checker(number, *functions)
    message = str(info.value)
    assert BAD_OUTPUTS[how] in message
    assert f"Exercise {number} (" in message
    assert any(words in message for words in ("should", "contains NaN", "expected a finite"))


def test_bare_none_for_a_tuple_result_asks_for_the_tuple():
    with pytest.raises(AssertionError, match=r"should return a tuple of 3 arrays \(dx, dweight, dbias\); got "
                                             r"None"):
        run_checker(4, lambda x, w, g, eps: None)


def test_passing_the_result_instead_of_the_function_is_explained():
    with pytest.raises(AssertionError, match="without parentheses"):
        run_checker(5, np.ones((3, 3), dtype=bool))


# ---- the notebooks -----------------------------------------------------------------------------
# (tests/test_notebooks.py checks that each .ipynb is stripped and matches its jupytext .py source)
def notebook_path(number: int) -> Path:
    return EXERCISE_DIR / f"{number:02d}_{EXERCISES[number][0]}.ipynb"


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("number", NUMBERS)
def test_every_exercise_has_a_notebook_with_a_stub_and_the_check_call(number):
    cells = code_cells(notebook_path(number))
    call = f"{EXERCISES[number][1].__name__}({', '.join(functions_needed(number))})"
    assert any(f'raise NotImplementedError("Exercise {number}:' in c for c in cells)
    assert any(c.strip() == call for c in cells)
    assert (EXERCISE_DIR / "solutions" / f"{number:02d}_{EXERCISES[number][0]}.py").exists()


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
    assert "✓ Exercise 5 passed (4 cases)" in printed
