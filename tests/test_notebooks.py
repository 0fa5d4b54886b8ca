"""The teaching notebooks: committed stripped, importing (never redefining) the package, and runnable.

* every notebook in notebooks/ and notebooks/exercises/ is stored without outputs (the policy);
* the notebooks that notebooks/_build.py writes are exactly what it would write now;
* every notebooks/0*.ipynb imports tinylora and defines no function or class the package defines;
* every notebooks/0*.ipynb runs top to bottom in fast mode (TINYLORA_FAST=1), marked ``notebook``.

Run only the execution tests with ``pytest -m notebook tests/test_notebooks.py``.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
PACKAGE_DIR = ROOT / "tinylora"
ALL_NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb")) + sorted((NOTEBOOK_DIR / "exercises").glob("*.ipynb"))
CHAPTERS = sorted(NOTEBOOK_DIR.glob("0*.ipynb"))
TIMEOUT_S = 180


def _ids(paths):
    return [str(p.relative_to(NOTEBOOK_DIR)) for p in paths]


def _code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells if c["cell_type"] == "code"]


def _parse(source: str) -> ast.Module:
    """Parse a code cell, blanking IPython magics and shell escapes (``%``, ``!``) first."""
    lines = [("" if line.lstrip().startswith(("%", "!")) else line) for line in source.splitlines()]
    return ast.parse("\n".join(lines))


def _package_names() -> set[str]:
    """Names of every module-level function and class defined anywhere in tinylora/."""
    names = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
    return names


# ---- the outputs policy ---------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=_ids(ALL_NOTEBOOKS))
def test_notebook_is_stripped(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells)
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} carry outputs or an execution count; notebooks are "
                       "committed stripped (rebuild with `python notebooks/_build.py`, or clear all outputs)")


def _builder():
    spec = importlib.util.spec_from_file_location("_notebook_build", NOTEBOOK_DIR / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_built_notebooks_match_their_source():
    pytest.importorskip("nbformat")
    builder = _builder()
    stale = [name for name in builder.NOTEBOOKS
             if not (NOTEBOOK_DIR / name).exists() or (NOTEBOOK_DIR / name).read_text() != builder.render(name)]
    assert not stale, f"{stale} differ from notebooks/_build.py; run `python notebooks/_build.py` and commit both"


# ---- import the package, never redefine it --------------------------------------------------
@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_notebook_imports_and_does_not_redefine_the_package(path):
    package_names = _package_names()
    imports_tinylora, redefined = False, []
    for source in _code_cells(path):
        for node in ast.walk(_parse(source)):
            if isinstance(node, ast.Import):
                imports_tinylora |= any(a.name.split(".")[0] == "tinylora" for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imports_tinylora |= (node.module or "").split(".")[0] == "tinylora"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in package_names:
                redefined.append(node.name)
    assert imports_tinylora, f"{path.name} never imports tinylora"
    assert not redefined, (f"{path.name} defines {sorted(set(redefined))}, which the package already defines; "
                           "import them from tinylora instead")


def test_the_package_name_check_catches_a_redefinition():
    """The AST check above must flag, e.g., a notebook's own ``def gradcheck``."""
    names = _package_names()
    assert {"Tensor", "gradcheck", "fit", "apply_lora", "GPT"} <= names
    tree = _parse("%matplotlib inline\ndef gradcheck(fn):\n    pass\n")
    assert [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)] == ["gradcheck"]


# ---- running them ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def python3_kernel_dir(tmp_path_factory):
    """A ``python3`` kernelspec that runs this interpreter (the venv), ahead of any registered one."""
    pytest.importorskip("ipykernel")
    kernel_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tinylora tests)", "language": "python"}))
    return kernel_dir.parent.parent


@pytest.mark.notebook
@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_notebook_runs_in_fast_mode(path, python3_kernel_dir, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    # The kernel is a child process: it inherits these.
    monkeypatch.setenv("JUPYTER_PATH", str(python3_kernel_dir))
    monkeypatch.setenv("TINYLORA_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.1f} s in fast mode")
    assert seconds < TIMEOUT_S, f"{path.name} took {seconds:.0f} s in fast mode; the budget is {TIMEOUT_S} s"
