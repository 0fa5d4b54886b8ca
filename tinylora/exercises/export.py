"""The student edition: the exercise notebooks with their stubs, and nothing a teacher keeps.

``export_student_edition(out_dir)`` reads each exercise's notebook from ``notebooks/exercises/``
(the jupytext source ``NN_name.py`` when jupytext is installed, else its paired ``NN_name.ipynb``),
checks that its stub cell still raises ``NotImplementedError("Exercise N: ...")``, drops any cell
tagged ``teacher``, clears outputs and writes ``NN_name.ipynb`` plus a README listing points and
minutes. The ``solutions/`` folder is never read. The checkers' expected answers come from the
installed tinylora package (its own ops), so the notebooks carry no reference computation.
"""
from __future__ import annotations

import json
from pathlib import Path

from .._validate import check_path
from ..io import atomic_writer
from .registry import EXERCISES, total_points

__all__ = ["DEFAULT_SOURCE", "TEACHER_TAG", "export_student_edition", "read_notebook"]

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "notebooks" / "exercises"
TEACHER_TAG = "teacher"   # a cell with this tag stays in the teacher's copy only


def read_notebook(source: Path, number: int) -> dict:
    """Exercise ``number``'s notebook as nbformat-4 JSON (a dict)."""
    stem = f"{number:02d}_{EXERCISES[number].name}"
    py, ipynb = source / f"{stem}.py", source / f"{stem}.ipynb"
    try:
        import jupytext
    except ImportError:
        jupytext = None
    if jupytext is not None and py.is_file():
        return json.loads(jupytext.writes(jupytext.read(py), fmt="ipynb"))
    if ipynb.is_file():
        return json.loads(ipynb.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"export: no notebook for exercise {number} in {source} (looked for {py.name} "
                            f"and {ipynb.name})")


def _text(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _student_cells(nb: dict, number: int) -> list:
    cells = [c for c in nb["cells"] if TEACHER_TAG not in c.get("metadata", {}).get("tags", [])]
    stubs = [c for c in cells if "exercise-stub" in c.get("metadata", {}).get("tags", [])]
    marker = f'raise NotImplementedError("Exercise {number}:'
    if not stubs or not all(marker in _text(c) for c in stubs):
        raise ValueError(f"export: exercise {number}'s notebook must have a cell tagged exercise-stub that "
                         f"raises NotImplementedError(\"Exercise {number}: ...\"); is a solution pasted in?")
    for cell in cells:
        if "solutions" in _text(cell):
            raise ValueError(f"export: exercise {number}'s notebook refers to the solutions folder")
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return cells


def _readme() -> str:
    rows = [f"| {n} | `{n:02d}_{ex.name}.ipynb` | {ex.title} | {ex.points} | {ex.minutes} |"
            for n, ex in EXERCISES.items()]
    return "\n".join([
        "# Exercises (student edition)", "",
        "Open a notebook in Jupyter, replace the `raise NotImplementedError(...)` line with your code, run",
        "the cell, then run the check cell. A check draws new random inputs every time; run it again after a",
        "fix for a hint, pass `hint=True` for the formula, and `seed=...` to repeat a failure's cases.", "",
        "| # | Notebook | Topic | Points | Minutes |", "|---|---|---|---|---|", *rows, "",
        f"Total: {total_points()} points.", ""])


def export_student_edition(out_dir, source=None) -> list[Path]:
    """Write every exercise notebook (stubs only) and a README into ``out_dir``; return the written paths.

    >>> import tempfile
    >>> paths = export_student_edition(tempfile.mkdtemp())
    >>> [p.name for p in paths][:2], len(paths)
    (['01_unbroadcast.ipynb', '02_matmul_backward.ipynb'], 25)
    """
    out = Path(check_path("out_dir", out_dir, where="export"))
    source = DEFAULT_SOURCE if source is None else Path(check_path("source", source, where="export"))
    if not source.is_dir():
        raise FileNotFoundError(f"export: the exercise folder {source} does not exist; pass --source, the "
                                "notebooks/exercises folder of a tinylora checkout")
    notebooks = {}
    for number in EXERCISES:        # read and check everything before writing anything
        nb = read_notebook(source, number)
        nb["cells"] = _student_cells(nb, number)
        notebooks[number] = nb
    written = []
    for number, nb in notebooks.items():
        path = out / f"{number:02d}_{EXERCISES[number].name}.ipynb"
        with atomic_writer(path) as f:
            f.write((json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        written.append(path)
    with atomic_writer(out / "README.md") as f:
        f.write(_readme().encode("utf-8"))
    return written + [out / "README.md"]
