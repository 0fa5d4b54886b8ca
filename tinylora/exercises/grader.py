"""Grade a folder of submitted notebooks: each in its own process, with a time limit, every checker run.

A submission is ``SUBMISSIONS/<student>.ipynb`` or a folder ``SUBMISSIONS/<student>/`` of notebooks.
``grade_folder`` runs each notebook in a child process (``python -m tinylora.exercises.grader
--worker``) in a fresh temporary folder and session; past ``timeout`` seconds the whole process group
is killed. The worker executes the code cells one by one (a cell that fails to compile or raises is
recorded and skipped; cells tagged ``exercise-check`` are skipped), then runs every exercise's checker
on the functions the notebook defined, with one seed for the whole class. ``grades.csv`` gets a row
per student (points per exercise, total, status) and ``feedback/<student>.md`` the verdict and hint
of every exercise (never the formula). A broken, empty, endless or crashing notebook costs its
student the points, never the grader its run. The process boundary guards against crashes and hangs,
not against a notebook written to cheat (it runs with the grader's rights): grade in a container or
an account of its own.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .._validate import check_int, check_path, check_real
from ..io import atomic_writer
from .engine import new_seed, run
from .registry import EXERCISES, total_points

__all__ = ["Grade", "find_submissions", "grade_notebook", "grade_folder", "write_grades"]

_OUTPUT_LIMIT = 4000   # characters of a notebook's own output kept for its feedback


@dataclass
class Grade:
    """One student's result: points per exercise, a status per exercise, notes, the wall time."""

    student: str
    points: dict = field(default_factory=dict)     # exercise number -> points
    status: dict = field(default_factory=dict)     # exercise number -> passed / failed / not done / missing
    messages: dict = field(default_factory=dict)   # exercise number -> the verdict and hint
    notes: list = field(default_factory=list)      # per notebook: timeouts, crashes, cells that failed
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.points.values())


# ---- the worker: runs in the child process -----------------------------------------------------
class _Tail(io.StringIO):
    """Keeps only the last ``_OUTPUT_LIMIT`` characters written (a notebook may print without end)."""

    def write(self, text) -> int:
        super().write(str(text))
        if self.tell() > 4 * _OUTPUT_LIMIT:
            kept = self.getvalue()[-_OUTPUT_LIMIT:]
            self.seek(0)
            self.truncate()
            super().write(kept)
        return len(text)


class _Timeout(BaseException):
    """An exercise's checker ran past its own limit (the notebook's limit still holds)."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    if not hasattr(signal, "setitimer"):
        yield
        return

    def stop(signum, frame):
        raise _Timeout()
    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _cells(path: Path) -> list[tuple[str, list]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a Jupyter notebook (no list of cells)")
    out = []
    for cell in nb["cells"]:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            out.append((source, list(cell.get("metadata", {}).get("tags", []))))
    return out


def _without_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _execute(cells, namespace: dict, notes: list, output: io.StringIO) -> None:
    for index, (source, tags) in enumerate(cells, 1):
        if "exercise-check" in tags or not source.strip():
            continue
        try:
            code = compile(_without_magics(source), f"<cell {index}>", "exec")
        except SyntaxError as err:
            notes.append(f"cell {index} does not compile: {err.msg} (line {err.lineno})")
            continue
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                exec(code, namespace)
        except BaseException as err:  # the student's code: SystemExit and KeyboardInterrupt included
            notes.append(f"cell {index} raised {type(err).__name__}: {str(err)[:200]}")


def _check_one(number: int, namespace: dict, seed: int, limit: float, output: io.StringIO) -> dict:
    ex = EXERCISES[number]
    fns = [namespace.get(name) for name in ex.functions]
    if not all(callable(fn) for fn in fns):
        missing = [n for n, fn in zip(ex.functions, fns) if not callable(fn)]
        return {"status": "missing", "points": 0, "message": f"not defined: {', '.join(missing)}"}
    try:
        with _time_limit(limit), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            result = run(ex, fns, seed)
    except _Timeout:
        return {"status": "failed", "points": 0, "message": f"the check ran past {limit:g} s (endless loop?)"}
    except BaseException as err:
        return {"status": "failed", "points": 0, "message": f"the check stopped: {type(err).__name__}: {err}"}
    if result.passed:
        return {"status": "passed", "points": ex.points, "message": f"passed ({result.cases} cases)"}
    if result.not_done:
        return {"status": "not done", "points": 0, "message": result.verdict}
    return {"status": "failed", "points": 0, "message": result.message(ex, stage=2)}


def _worker(notebook: str, result_path: str, seed: int, limit: float) -> int:
    notes, output, namespace = [], _Tail(), {"__name__": "__submission__"}
    try:
        cells = _cells(Path(notebook))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        cells, notes = [], [f"the notebook could not be read: {err}"]
    _execute(cells, namespace, notes, output)
    exercises = {n: _check_one(n, namespace, seed, limit, output) for n in EXERCISES}
    text = output.getvalue()
    result = {"notes": notes, "exercises": exercises, "output": text[-_OUTPUT_LIMIT:]}
    with atomic_writer(result_path) as f:
        f.write(json.dumps(result).encode("utf-8"))
    return 0


# ---- the parent --------------------------------------------------------------------------------
def find_submissions(folder) -> dict[str, list[Path]]:
    """student -> their notebooks: ``<student>.ipynb`` files and ``<student>/`` folders of notebooks."""
    root = Path(check_path("submissions", folder, where="grade"))
    if not root.is_dir():
        raise FileNotFoundError(f"grade: the submissions folder {root} does not exist")
    found = {}
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix == ".ipynb":
            found[entry.stem] = [entry]
        elif entry.is_dir() and not entry.name.startswith("."):
            found[entry.name] = sorted(entry.glob("*.ipynb"))
    return found


def _child_env() -> dict:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    env["MPLBACKEND"] = "Agg"
    return env


def grade_notebook(path, timeout: float = 60.0, seed: int = 0, check_timeout: float = 30.0) -> dict:
    """Run one notebook in its own process group; kill it past ``timeout`` s. Returns the worker's result.

    Each exercise's check is stopped after ``check_timeout`` s, so one endless function costs only its
    own exercise (the notebook's ``timeout`` still bounds the whole run).
    """
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="tinylora-grade-") as work:
        result_path, log_path = Path(work) / "result.json", Path(work) / "log.txt"
        cmd = [sys.executable, "-m", "tinylora.exercises.grader", "--worker", str(path), str(result_path),
               str(seed), str(check_timeout)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=_child_env(), start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return {"error": f"{path.name} did not finish within {timeout:g} s and was stopped"}
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)   # anything it started in the background
        try:
            return json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = log_path.read_bytes()[-1000:].decode("utf-8", "replace").strip()
            return {"error": f"{path.name} stopped the grader's process (exit code {proc.returncode})"
                             + (f": {tail.splitlines()[-1]}" if tail else "")}


_RANK = {"passed": 3, "failed": 2, "not done": 1, "missing": 0}


def _merge(grade: Grade, name: str, result: dict) -> None:
    if "error" in result:
        grade.notes.append(result["error"])
        return
    grade.notes += [f"{name}: {note}" for note in result.get("notes", [])]
    for key, item in result.get("exercises", {}).items():
        n = int(key)
        if n in EXERCISES and _RANK.get(item.get("status"), -1) > _RANK.get(grade.status.get(n), -1):
            grade.status[n], grade.messages[n] = item["status"], str(item.get("message", ""))
            grade.points[n] = EXERCISES[n].points if item["status"] == "passed" else 0


def _grade_student(student: str, notebooks: list, timeout: float, seed: int, check_timeout: float) -> Grade:
    grade, start = Grade(student), time.perf_counter()
    grade.points = {n: 0 for n in EXERCISES}
    grade.status = {n: "missing" for n in EXERCISES}
    if not notebooks:
        grade.notes.append("no notebook submitted")
    for path in notebooks:
        _merge(grade, path.name, grade_notebook(path, timeout, seed, check_timeout))
    grade.seconds = time.perf_counter() - start
    return grade


def _feedback(grade: Grade, seed: int) -> str:
    lines = [f"# Feedback for {grade.student}", "",
             f"Total: {grade.total} of {total_points()} points (checks drawn with seed {seed}).", ""]
    if grade.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in grade.notes], ""]
    lines += ["## Exercises", ""]
    for n, ex in EXERCISES.items():
        lines += [f"### {n}. {ex.title}: {grade.status[n]}, {grade.points[n]} of {ex.points}", ""]
        if grade.status[n] in ("failed", "not done") and grade.messages.get(n):
            lines += ["```", grade.messages[n], "```", ""]
    return "\n".join(lines)


def _safe_name(student: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", student) or "student"


def write_grades(grades: list, out_csv, feedback_dir, seed: int) -> None:
    """grades.csv (student, ex01.., total, max, notes) and one feedback Markdown file per student."""
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["student", *[f"ex{n:02d}" for n in EXERCISES], "total", "max", "notes"])
    for g in grades:
        writer.writerow([g.student, *[g.points[n] for n in EXERCISES], g.total, total_points(),
                         "; ".join(g.notes)])
    with atomic_writer(out_csv) as f:
        f.write(rows.getvalue().encode("utf-8"))
    for g in grades:
        with atomic_writer(Path(feedback_dir) / f"{_safe_name(g.student)}.md") as f:
            f.write(_feedback(g, seed).encode("utf-8"))


def grade_folder(submissions, out_csv="grades.csv", feedback_dir=None, timeout: float = 120.0,
                 seed: int | None = None, jobs: int = 1, check_timeout: float = 30.0) -> list[Grade]:
    """Grade every submission in ``submissions``; write ``out_csv`` and ``feedback_dir/<student>.md``."""
    out_csv = Path(check_path("out", out_csv, where="grade"))
    timeout = check_real("timeout", timeout, low=1.0, where="grade")
    jobs = check_int("jobs", jobs, low=1, where="grade")
    check_timeout = check_real("check_timeout", check_timeout, low=0.1, where="grade")
    seed = new_seed() if seed is None else check_int("seed", seed, low=0, where="grade")
    feedback_dir = out_csv.parent / "feedback" if feedback_dir is None else Path(feedback_dir)
    students = find_submissions(submissions)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        grades = list(pool.map(lambda item: _grade_student(*item, timeout, seed, check_timeout),
                               students.items()))
    write_grades(grades, out_csv, feedback_dir, seed)
    return grades


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    notebook_arg, result_arg, seed_arg, limit_arg = sys.argv[2:6]
    sys.exit(_worker(notebook_arg, result_arg, int(seed_arg), float(limit_arg)))
