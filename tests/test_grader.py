"""The student edition and the grader: export writes stubs only; grade survives any notebook and scores it.

The end-to-end test grades a folder with a correct, a partly wrong, an empty, a broken (syntax
error), a never-ending, a crashing and an unreadable notebook through the CLI, with a 20 s limit
per notebook, and compares grades.csv with the expected points.
"""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from tinylora.cli import main
from tinylora.exercises import EXERCISES, total_points
from tinylora.exercises.export import DEFAULT_SOURCE, export_student_edition
from tinylora.exercises.grader import find_submissions, grade_folder, grade_notebook

SOLUTIONS = DEFAULT_SOURCE / "solutions"


def notebook(*sources: str) -> str:
    cells = [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
             for s in sources]
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells})


def solution_source(number: int) -> str:
    return (SOLUTIONS / f"{number:02d}_{EXERCISES[number].name}.py").read_text()


# ---- export --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert main(["exercises", "export", str(out)]) == 0
    return out


def test_export_writes_every_exercise_notebook_and_a_readme(edition):
    names = sorted(p.name for p in edition.iterdir())
    assert names == sorted([f"{n:02d}_{ex.name}.ipynb" for n, ex in EXERCISES.items()] + ["README.md"])
    assert f"Total: {total_points()} points." in (edition / "README.md").read_text()


def test_the_student_edition_holds_the_stubs_and_no_solution(edition):
    for number, ex in EXERCISES.items():
        text = (edition / f"{number:02d}_{ex.name}.ipynb").read_text()
        cells = json.loads(text)["cells"]
        stubs = ["".join(c["source"]) for c in cells if "exercise-stub" in c["metadata"].get("tags", [])]
        assert stubs and all(f'raise NotImplementedError("Exercise {number}:' in s for s in stubs)
        assert "solutions" not in text and not (edition / "solutions").exists()
        body = solution_source(number).split('"""', 2)[-1].strip()   # the solution's code, past its docstring
        assert body.splitlines()[-1].strip() not in text


def test_export_refuses_a_source_whose_stub_holds_a_solution(tmp_path):
    source = tmp_path / "exercises"
    shutil.copytree(DEFAULT_SOURCE, source, ignore=shutil.ignore_patterns("solutions"))
    for suffix in (".py", ".ipynb"):     # the stub's raise becomes a return, in the source and its pair
        path = source / f"05_causal_mask{suffix}"
        path.write_text(path.read_text().replace("raise NotImplementedError(", "return ("))
    with pytest.raises(ValueError, match="exercise 5's notebook must have a cell tagged exercise-stub"):
        export_student_edition(tmp_path / "out", source=source)
    assert not (tmp_path / "out").exists()       # nothing is written when one notebook is wrong


# ---- grade ---------------------------------------------------------------------------------
def test_submissions_are_notebook_files_or_folders_of_notebooks(tmp_path):
    (tmp_path / "ann.ipynb").write_text(notebook())
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "01.ipynb").write_text(notebook())
    (tmp_path / "notes.txt").write_text("not a submission")
    found = find_submissions(tmp_path)
    assert {k: [p.name for p in v] for k, v in found.items()} == {"ann": ["ann.ipynb"], "bob": ["01.ipynb"]}


def test_grade_refuses_a_timeout_below_one_second(tmp_path):
    with pytest.raises(ValueError, match="timeout"):
        grade_folder(tmp_path, tmp_path / "grades.csv", timeout=0)


def test_a_function_that_never_returns_fails_its_own_exercise_and_the_others_are_still_graded(tmp_path):
    (tmp_path / "loop.ipynb").write_text(notebook(
        "def causal_mask(T):\n    while True:\n        pass", solution_source(16)))
    result = grade_notebook(tmp_path / "loop.ipynb", timeout=20, seed=0, check_timeout=1)
    assert result["exercises"]["5"]["status"] == "failed"
    assert "ran past 1 s" in result["exercises"]["5"]["message"]
    assert result["exercises"]["16"]["status"] == "passed"


PARTLY = {1: 2, 5: 1, 6: 1}                  # exercise -> points of the partly wrong submission


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    subs = root / "submissions"
    subs.mkdir()
    (subs / "correct.ipynb").write_text(notebook("import numpy as np", *map(solution_source, EXERCISES)))
    wrong_merge = "def merge(W0, A, B, alpha, r):\n    return W0 + B @ A\n"
    stub = 'def matmul_backward(a, b, grad_out):\n    raise NotImplementedError("Exercise 2: todo")\n'
    (subs / "partly_wrong.ipynb").write_text(notebook(
        *(solution_source(n) for n in PARTLY), wrong_merge,
        "def unmerge" + solution_source(7).split("def unmerge")[1], stub,
        "check_causal_mask(causal_mask)"))
    (subs / "empty.ipynb").write_text(notebook())
    (subs / "broken.ipynb").write_text(notebook("def causal_mask(T)\n    return T", solution_source(16)))
    (subs / "never_ending.ipynb").write_text(notebook(solution_source(5), "while True:\n    pass"))
    (subs / "crashing.ipynb").write_text(notebook(solution_source(5), "import os\nos._exit(3)"))
    (subs / "unreadable.ipynb").write_text("{ this is not json")
    out = root / "grades.csv"
    code = main(["exercises", "grade", str(subs), "--out", str(out), "--timeout", "20", "--seed", "11",
                 "--jobs", "2"])
    assert code == 0
    with open(out, newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}, root / "feedback"


def points(row) -> dict:
    return {n: int(row[f"ex{n:02d}"]) for n in EXERCISES}


def expected(**earned) -> dict:
    return {n: earned.get(f"ex{n}", 0) for n in EXERCISES}


@pytest.mark.slow
def test_the_grader_scores_every_kind_of_submission_as_expected(graded):
    rows, _ = graded
    assert sorted(rows) == ["broken", "correct", "crashing", "empty", "never_ending", "partly_wrong",
                            "unreadable"]
    assert points(rows["correct"]) == {n: ex.points for n, ex in EXERCISES.items()}, rows["correct"]
    assert int(rows["correct"]["total"]) == total_points() == int(rows["correct"]["max"])
    assert points(rows["partly_wrong"]) == expected(**{f"ex{n}": p for n, p in PARTLY.items()})
    assert points(rows["broken"]) == expected(ex16=1)
    for student in ("empty", "never_ending", "crashing", "unreadable"):
        assert points(rows[student]) == expected() and rows[student]["total"] == "0"


@pytest.mark.slow
def test_the_grader_says_why_a_notebook_earned_nothing(graded):
    rows, _ = graded
    assert "did not finish within 20 s and was stopped" in rows["never_ending"]["notes"]
    assert "stopped the grader's process (exit code 3)" in rows["crashing"]["notes"]
    assert "could not be read" in rows["unreadable"]["notes"]
    assert "cell 1 does not compile" in rows["broken"]["notes"]


@pytest.mark.slow
def test_feedback_gives_each_student_the_verdict_and_hint_but_not_the_formula(graded):
    _, feedback = graded
    text = (feedback / "partly_wrong.md").read_text()
    assert "### 7. merge and unmerge: failed, 0 of 1" in text
    assert "Hint: forgot the scaling: W = W0 + (alpha/r)·B A." in text
    assert "### 2. matmul backward: not done" in text
    assert "Formula:" not in text
    assert f"Total: {total_points()} of {total_points()}" in (feedback / "correct.md").read_text()
