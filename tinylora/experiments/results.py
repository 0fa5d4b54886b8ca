"""A sweep folder's files, the order of its tasks, and the one reader and writer of ``results.jsonl``.

``DIR/results.jsonl`` holds one JSON object per finished run (see ``docs/analysis.md``).
The sweep rewrites it atomically after every run; everything that reads it (resume, summary,
report, figures) goes through ``read_results``, so a damaged line is treated the same way
everywhere: a line that is not a JSON object with a string ``task`` and ``method`` (say, one
cut short by a crash of an older writer) is skipped with a warning naming its line number.

>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> write_results(folder, [{"task": "domain", "method": "lora", "rank": 4}])
>>> [run["rank"] for run in read_results(folder)]
[4]
>>> sorted(["scaling", "mine", "planted"], key=task_key)
['planted', 'scaling', 'mine']
"""
from __future__ import annotations

import json
import os
import warnings

from ..io import atomic_writer

__all__ = ["RESULTS_NAME", "SWEEP_NAME", "SUMMARY_NAME", "FIGURES_DIR", "TASKS", "task_key", "read_results",
           "load_results", "write_results"]

RESULTS_NAME = "results.jsonl"   # one JSON line per finished run
SWEEP_NAME = "sweep.json"        # the sweep's config, so a different sweep in the folder is refused
SUMMARY_NAME = "summary.csv"     # summary.write_summary_csv
FIGURES_DIR = "figures"          # figures.plot_all writes NAME.png and NAME.svg here
# The sweep's tasks, in the order that tables and reports list them (tasks.py describes each).
TASKS = ("planted", "domain", "budget", "scaling")


def task_key(task: str) -> tuple:
    """Sort key: the tasks of ``TASKS`` in that order, then any other task by name."""
    return (TASKS.index(task), "") if task in TASKS else (len(TASKS), task)


def _results_path(directory) -> str:
    return os.path.join(os.fspath(directory), RESULTS_NAME)


def _damage(line: str) -> str | None:
    """Why ``line`` is not a run, or None when it is one."""
    try:
        run = json.loads(line)
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err.msg}"
    if not isinstance(run, dict):
        return f"a JSON {type(run).__name__}, not an object"
    missing = [k for k in ("task", "method") if not isinstance(run.get(k), str)]
    return f"no {' or '.join(missing)}" if missing else None


def read_results(directory) -> list[dict]:
    """Every run in ``DIR/results.jsonl``, in file order; [] when there is no such file.

    Blank lines are ignored; a damaged line (see the module docstring) is skipped with a
    ``UserWarning`` naming ``path:line``.
    """
    path = _results_path(directory)
    if not os.path.isfile(path):
        return []
    runs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            problem = _damage(line)
            if problem:
                warnings.warn(f"{path}:{lineno}: skipped a line ({problem})", stacklevel=2)
                continue
            runs.append(json.loads(line))
    return runs


def load_results(directory) -> list[dict]:
    """``read_results`` for a folder that must hold a finished sweep (summaries, reports, figures).

    Raises FileNotFoundError when ``DIR/results.jsonl`` is absent and ValueError when it holds
    no usable run.
    """
    path = _results_path(directory)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {RESULTS_NAME} in {os.fspath(directory)!r}: run "
                                "`tinylora sweep --out DIR` first, or point at a folder a sweep wrote")
    runs = read_results(directory)
    if not runs:
        raise ValueError(f"{path} holds no finished runs")
    return runs


def write_results(directory, results: list[dict]) -> None:
    """Write ``DIR/results.jsonl``, one JSON line per run, atomically (temporary file + rename)."""
    with atomic_writer(_results_path(directory), "w") as f:
        for run in results:
            f.write(json.dumps(run) + "\n")
