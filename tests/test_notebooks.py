"""The teaching notebooks: jupytext sources, stripped copies, importing (never redefining) the package.

* every notebook in notebooks/ and notebooks/exercises/ is stored without outputs (the policy);
* every such .ipynb is paired with a jupytext py:percent source (NN_name.py beside it), and the
  two hold the same cells: the .py is the truth, the .ipynb its synced copy;
* no notebook source imports a private tinylora name or touches a private attribute (``._parents``);
* every notebooks/0*.ipynb imports tinylora and defines no function or class the package defines;
* every notebooks/0*.ipynb runs top to bottom in fast mode (TINYLORA_FAST=1), marked ``notebook``.

Run only the execution tests with ``pytest -m notebook tests/test_notebooks.py``.
"""
from __future__ import annotations

import ast
import json
import re
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
PACKAGE_DIR = ROOT / "tinylora"
ALL_NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb")) + sorted((NOTEBOOK_DIR / "exercises").glob("*.ipynb"))
SOURCES = sorted(NOTEBOOK_DIR.glob("*.py")) + sorted((NOTEBOOK_DIR / "exercises").glob("*.py"))
CHAPTERS = sorted(NOTEBOOK_DIR.glob("0*.ipynb"))
PAIRING = "ipynb,py:percent"
SYNC = "jupytext --sync notebooks/*.py notebooks/exercises/*.py"
TIMEOUT_S = 180
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


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
            if isinstance(node, DEFINITIONS):
                names.add(node.name)
    return names


# ---- the outputs policy ---------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=_ids(ALL_NOTEBOOKS))
def test_notebook_is_stripped(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells)
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} carry outputs or an execution count; notebooks are "
                       "committed stripped: clear all outputs and save (see notebooks/README.md)")


# ---- the jupytext sources ---------------------------------------------------------------------
def _cells(notebook) -> list[tuple[str, str, list]]:
    """What a notebook is made of, for comparing an .ipynb with its .py: kind, text and tags of each cell."""
    return [(cell.cell_type, cell.source, list(cell.metadata.get("tags", []))) for cell in notebook.cells]


def test_every_notebook_has_a_jupytext_source_and_every_source_a_notebook():
    notebooks = {p.with_suffix("") for p in ALL_NOTEBOOKS}
    sources = {p.with_suffix("") for p in SOURCES}
    assert notebooks, "no notebooks found"
    assert not notebooks - sources, (f"{_ids(sorted(notebooks - sources))}: no .py source; create it with "
                                     "`jupytext --set-formats ipynb,py:percent NOTEBOOK.ipynb`")
    assert not sources - notebooks, (f"{_ids(sorted(sources - notebooks))}: a .py with no .ipynb; only "
                                     f"notebook sources live here. If it is one, run `{SYNC}`")


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=_ids(ALL_NOTEBOOKS))
def test_every_committed_notebook_matches_its_jupytext_source(path):
    jupytext = pytest.importorskip("jupytext")
    source = path.with_suffix(".py")
    if not source.exists():
        pytest.fail(f"{path.name} has no jupytext source {source.name}")
    notebook, text = jupytext.read(path), jupytext.read(source)
    assert notebook.metadata.get("jupytext", {}).get("formats") == PAIRING, (
        f"{path.name} is not paired with its source; run `jupytext --set-formats {PAIRING} {path.name}`")
    assert text.metadata.get("jupytext", {}).get("text_representation", {}).get("format_name") == "percent", (
        f"{source.name} is not in jupytext's py:percent format")
    committed, truth = _cells(notebook), _cells(text)
    differ = [i for i, (a, b) in enumerate(zip(committed, truth)) if a != b]
    first = differ[0] if differ else min(len(committed), len(truth))
    assert committed == truth, (
        f"{path.name} ({len(committed)} cells) and {source.name} ({len(truth)} cells) differ from cell "
        f"{first} on; run `{SYNC}` and commit both")


# ---- public API only --------------------------------------------------------------------------
FROM_IMPORT = re.compile(r"^[#\s]*from\s+(tinylora(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n]*)", re.MULTILINE)
DOTTED = re.compile(r"\btinylora(?:\.\w+)*?\.(_\w+)")
PRIVATE_ATTRIBUTE = re.compile(r"(?<![\w.])\w[\w.]*?\.(_[A-Za-z]\w*)\b")


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _private_uses(text: str) -> list[str]:
    """Private tinylora names a notebook source imports or refers to, and private attributes it reads."""
    found = []
    for match in FROM_IMPORT.finditer(text):
        module, names = match.group(1), match.group(2)
        if any(part.startswith("_") for part in module.split(".")):
            found.append(f"from {module} import ...")
        names = " ".join(line.split("#")[0] for line in names.strip("()").splitlines())
        found += [f"from {module} import {name}" for name in (item.split(" as ")[0].strip()
                                                                 for item in names.strip("() ").split(","))
                  if name.startswith("_")]
    found += [match.group(0) for match in DOTTED.finditer(text) if not _dunder(match.group(1))]
    found += [match.group(0) for match in PRIVATE_ATTRIBUTE.finditer(text)
              if not _dunder(match.group(1)) and not match.group(0).startswith(("tinylora.", "self."))]
    return found


@pytest.mark.parametrize("source", SOURCES, ids=_ids(SOURCES))
def test_no_notebook_source_uses_a_private_name_of_the_package(source):
    private = _private_uses(source.read_text())
    assert not private, (f"{source.name} uses {private}: a notebook shows the public API only "
                         "(Tensor.from_op, .parents, .op_name, tinylora.tensor.topological_order, ...)")


def test_the_private_name_check_catches_what_notebook_01_once_did():
    old = ("from tinylora.tensor import _result, _topological_order, _unbroadcast\n"
           "from tinylora.lora import (LoraConfig,  # a comment\n    _private)\n"
           "print(y._parents, node._backward.__qualname__, tinylora.tensor._result)\n"
           "import tinylora._validate\n")
    assert _private_uses(old) == [
        "from tinylora.tensor import _result", "from tinylora.tensor import _topological_order",
        "from tinylora.tensor import _unbroadcast", "from tinylora.lora import _private",
        "tinylora.tensor._result", "tinylora._validate", "y._parents", "node._backward"]
    public = ("import tinylora\nfrom tinylora.tensor import topological_order, unbroadcast\n"
              "print(tinylora.__version__, y.parents, y.op_name, Tensor.from_op, x.__class__)\n")
    assert _private_uses(public) == []


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
            elif isinstance(node, DEFINITIONS) and node.name in package_names:
                redefined.append(node.name)
    assert imports_tinylora, f"{path.name} never imports tinylora"
    assert not redefined, (f"{path.name} defines {sorted(set(redefined))}, which the package already "
                           "defines; import them from tinylora instead")


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
