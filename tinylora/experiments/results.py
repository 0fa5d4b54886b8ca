"""A sweep folder's files, the order of its tasks, and the one reader and writers of ``results.jsonl``.

``DIR/results.jsonl`` holds one JSON object per finished run (see ``docs/analysis.md``). The
sweep appends each run as one whole line and fsyncs it (``append_result``), under the folder's
lock, so a crash loses at most the runs in flight. Everything that reads it (resume, summary,
report, figures) goes through ``read_results``, so a damaged line is treated the same way
everywhere: a line that is not UTF-8 text holding a JSON object with a string ``task`` and
``method`` (say, one cut short by a kill) is skipped with a warning naming its line number.

A run whose loss or metrics became NaN or inf, or exploded (``divergence``), carries
``"status": "diverged"`` and a ``message``; it is recorded but is not a result.

>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> write_results(folder, [{"task": "domain", "method": "lora", "rank": 4}])
>>> append_result(folder, {"task": "domain", "method": "lora", "rank": 8})
>>> [run["rank"] for run in read_results(folder)]
[4, 8]
>>> sorted(["scaling", "mine", "planted"], key=task_key)
['planted', 'scaling', 'mine']
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import warnings

from ..io import atomic_writer

__all__ = ["RESULTS_NAME", "SWEEP_NAME", "SUMMARY_NAME", "FIGURES_DIR", "LOCK_NAME", "DAMAGED_NAME", "TASKS",
           "EXPLODED_FACTOR", "task_key", "read_results", "load_results", "write_results", "append_result",
           "set_aside_damaged", "naming", "divergence", "is_diverged"]

RESULTS_NAME = "results.jsonl"   # one JSON line per finished run
SWEEP_NAME = "sweep.json"        # the sweep's config, so a different sweep in the folder is refused
SUMMARY_NAME = "summary.csv"     # summary.write_summary_csv
FIGURES_DIR = "figures"          # figures.plot_all writes NAME.png and NAME.svg here
DAMAGED_NAME = "results.damaged"  # lines of results.jsonl that a resume could not read, set aside
LOCK_NAME = "sweep.lock"         # held (flock) by the one sweep that writes the folder; holds its pid
# The sweep's tasks, in the order that tables and reports list them (tasks.py describes each).
TASKS = ("planted", "domain", "budget", "scaling", "merge-lab")


def task_key(task: str) -> tuple:
    """Sort key: the tasks of ``TASKS`` in that order, then any other task by name."""
    return (TASKS.index(task), "") if task in TASKS else (len(TASKS), task)


def _results_path(directory) -> str:
    return os.path.join(os.fspath(directory), RESULTS_NAME)


def _damage(raw: bytes, required: tuple) -> str | None:
    """Why ``raw`` (one line of the file) is not a run with string fields ``required``, or None."""
    try:
        run = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        return f"not UTF-8 text: byte {raw[err.start]:#04x} at column {err.start + 1}"
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err.msg}"
    if not isinstance(run, dict):
        return f"a JSON {type(run).__name__}, not an object"
    missing = [k for k in required if not isinstance(run.get(k), str)]
    return f"no {' or '.join(missing)}" if missing else None


def read_results(directory, required=("task", "method")) -> list[dict]:
    """Every run in ``DIR/results.jsonl``, in file order; [] when there is no such file.

    Blank lines are ignored; a damaged line (see the module docstring), or one whose fields
    ``required`` are not strings, is skipped with a ``UserWarning`` naming ``path:line``.
    (Resume requires ``run_id`` too.)
    """
    path = _results_path(directory)
    if not os.path.isfile(path):
        return []
    runs = []
    for lineno, line, problem in _scan(path, tuple(required)):
        if problem:
            warnings.warn(f"{path}:{lineno}: skipped a line ({problem})", stacklevel=2)
            continue
        runs.append(json.loads(line.decode("utf-8")))
    return runs


def _scan(path: str, required: tuple):
    """(line number, stripped bytes, why it is damaged or None) for each non-blank line of ``path``."""
    with open(path, "rb") as f:  # bytes: one non-UTF-8 byte spoils its own line, not the file
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, line.strip(), _damage(line.strip(), required)


def set_aside_damaged(directory, required=("task", "method")) -> int:
    """Move the damaged lines of ``DIR/results.jsonl`` to ``DIR/results.damaged`` (appended, kept as they
    were), rewriting the file atomically with its good lines; returns how many moved. Call it only
    while holding the folder's lock (``folder.folder_lock``), so no other writer is appending."""
    path = _results_path(directory)
    if not os.path.isfile(path):
        return 0
    lines = list(_scan(path, tuple(required)))
    damaged = [line for _, line, problem in lines if problem]
    if damaged:
        for lineno, _, problem in lines:
            if problem:
                warnings.warn(f"{path}:{lineno}: skipped a line ({problem})", stacklevel=2)
        with open(os.path.join(os.fspath(directory), DAMAGED_NAME), "ab") as f:
            f.write(b"".join(line + b"\n" for line in damaged))
            f.flush()
            os.fsync(f.fileno())
        with atomic_writer(path) as f:
            f.write(b"".join(line + b"\n" for _, line, problem in lines if not problem))
    return len(damaged)


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


def append_result(directory, run: dict) -> None:
    """Add ``run`` to ``DIR/results.jsonl`` as one whole line, flushed and fsynced before returning.

    A line left without its newline by a killed writer is ended first, so it stays one damaged
    line (skipped by ``read_results``) instead of swallowing this run.
    """
    line = json.dumps(run).encode("utf-8") + b"\n"
    path = _results_path(directory)
    with naming(path):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            if size and os.lseek(fd, size - 1, os.SEEK_SET) >= 0 and os.read(fd, 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)  # one write of the whole line: O_APPEND puts it after the last byte
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def naming(path):
    """Give an OSError raised inside (a write's, which names no file) the ``path`` it was writing."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror or str(err), os.fspath(path)) from None


# --------------------------------------------------------------------------- diverged runs

# The rule for finite but exploded metrics: a run that ends EXPLODED_FACTOR times worse than not
# training at all has diverged. For an error relative to the untrained model (rel_error and
# weight_error are 1 without training) that is a value above 10; for a held-out loss in nats it is
# a loss more than ln(10) above the base model's, i.e. the true next token gets under a tenth of
# the probability the base model gave it.
EXPLODED_FACTOR = 10.0
_RELATIVE_ERRORS = ("rel_error", "weight_error")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def divergence(run: dict) -> str | None:
    """Why the metrics of ``run`` show it diverged (non-finite, or exploded), or None when they do not."""
    metrics = run.get("metrics")
    if not isinstance(metrics, dict):
        return None
    for name, value in metrics.items():
        if _is_number(value) and not math.isfinite(value):
            return f"{name} became {value}"
    for name in _RELATIVE_ERRORS:
        value = metrics.get(name)
        if _is_number(value) and value > EXPLODED_FACTOR:
            return (f"{name} is {value:.3g}, over {EXPLODED_FACTOR:g}x its value without training (1): "
                    "the weights exploded")
    loss, base = metrics.get("val_loss"), metrics.get("base_val_loss")
    if _is_number(loss) and _is_number(base) and loss - base > math.log(EXPLODED_FACTOR):
        return (f"val_loss is {loss:.4g}, more than ln({EXPLODED_FACTOR:g}) above the base model's "
                f"{base:.4g}: the model lost what it knew")
    return None


def is_diverged(run: dict) -> bool:
    """True for a run recorded as ``"status": "diverged"``, or an older line whose metrics diverged."""
    return run.get("status") == "diverged" or divergence(run) is not None
