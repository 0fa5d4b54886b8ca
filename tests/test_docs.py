"""The docs: their Python examples run, the site builds offline without a warning, and what they cite exists.

* every ```python block in docs/*.md and README.md runs, page by page: the blocks of one page share
  a namespace and run in order, in a temporary folder. A block whose first line starts with ``>>>``
  runs as a doctest, so the values it shows are checked. A block is skipped when its info string
  is ``python no-run`` or the line before it is ``<!-- no-run -->`` (for blocks that need a GPU, a
  cluster or a finished sweep);
* ``sphinx-build -W --keep-going -b html docs`` succeeds with no network (skipped without Sphinx
  and myst-parser: ``pip install -e ".[docs]"``);
* every ``tests/test_x.py::test_name`` the docs cite names a test that exists;
* numbers the docs state from a computation are what the code computes now (the LoRA page's
  worked example is checked by tests/test_lora.py).
"""
from __future__ import annotations

import ast
import doctest
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
CONCEPT_PAGES = [DOCS / f"{name}.md" for name in ("autograd", "transformer", "lora", "intrinsic_rank")]
RESULT_FIGURES = ("domain_metric_vs_rank", "parameters_vs_rank", "delta_spectrum", "subspace_similarity",
                  "planted_knee", "smollm2_learning_vs_forgetting", "smollm2_real_metrics_vs_rank",
                  "table7_amplification", "delta_weight_similarity", "seed_similarity", "merge_lab")
NO_RUN = "<!-- no-run -->"
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
TEST_REFERENCE = re.compile(r"tests/(?P<file>test_\w+\.py)(?:::(?P<names>\w+(?:::\w+)?))?")


@dataclass
class Block:
    info: str
    line: int          # 1-based line of the first code line
    code: str
    no_run: bool

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def is_doctest(self) -> bool:
        return self.code.lstrip().startswith(">>>")


def code_blocks(text: str) -> list[Block]:
    """Fenced code blocks of a Markdown page, with their info string and whether they are marked no-run."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        previous = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        end = i + 1
        while end < len(lines) and not re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", lines[end]):
            end += 1
        blocks.append(Block(info, i + 2, "\n".join(lines[i + 1:end]) + "\n",
                            no_run="no-run" in info.split() or previous == NO_RUN))
        i = end + 1
    return blocks


def runnable_blocks(path: Path) -> list[Block]:
    return [b for b in code_blocks(path.read_text()) if b.language == "python" and not b.no_run]


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


RUNNABLE_PAGES = [p for p in PAGES if runnable_blocks(p)]


def run_block(block: Block, namespace: dict, path: Path) -> None:
    where = f"{page_id(path)}:{block.line}"
    if block.is_doctest:
        test = doctest.DocTestParser().get_doctest(block.code, namespace, where, str(path), block.line - 1)
        output: list[str] = []
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=output.append, clear_globs=False)
        namespace.update(test.globs)  # DocTest works on a copy; later blocks see what this one defined
        assert not runner.failures, (
            f"the example at {where} printed something else than the page shows:\n" + "".join(output))
    else:
        padded = "\n" * (block.line - 1) + block.code  # tracebacks then point at the page's own line numbers
        exec(compile(padded, str(path), "exec"), namespace)


@pytest.fixture
def quiet_folder(tmp_path, monkeypatch):
    """A fresh working folder, no progress bars, and a matplotlib that draws without a screen."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


# ---- 1. the examples run ---------------------------------------------------------------------
@pytest.mark.parametrize("path", RUNNABLE_PAGES, ids=[page_id(p) for p in RUNNABLE_PAGES])
def test_python_examples_on_the_page_run_top_to_bottom(path, quiet_folder):
    namespace = {"__name__": "__docs__"}
    for block in runnable_blocks(path):
        run_block(block, namespace, path)


def test_the_block_reader_skips_blocks_marked_no_run_and_sees_doctests():
    page = ("```python\nx = 1\n```\n\n<!-- no-run -->\n```python\nraise SystemExit\n```\n"
            "```python no-run\nraise SystemExit\n```\n"
            "````python\n>>> 1 + 1\n2\n```\n````\n```bash\nls\n```\n")
    blocks = code_blocks(page)
    assert [(b.language, b.no_run, b.is_doctest) for b in blocks] == [
        ("python", False, False), ("python", True, False), ("python", True, False), ("python", False, True),
        ("bash", False, False)]
    assert blocks[0].line == 2 and blocks[3].code == ">>> 1 + 1\n2\n```\n"


# ---- 2. the site builds ----------------------------------------------------------------------
def _refuse_network(*args, **kwargs):
    raise OSError("the docs build tried to use the network")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning")
def test_the_site_builds_offline_with_warnings_as_errors(tmp_path, monkeypatch):
    pytest.importorskip("sphinx", reason='Sphinx is not installed: pip install -e ".[docs]"')
    pytest.importorskip("myst_parser", reason='myst-parser is not installed: pip install -e ".[docs]"')
    from sphinx.cmd.build import build_main

    monkeypatch.setattr(socket.socket, "connect", _refuse_network)
    monkeypatch.setattr(socket, "create_connection", _refuse_network)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    warnings = tmp_path / "warnings.txt"
    status = build_main(["-W", "--keep-going", "-q", "-b", "html", "-w", str(warnings),
                         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")])
    assert status == 0, f"sphinx-build failed:\n{warnings.read_text()}"
    assert (tmp_path / "html" / "api.html").exists()


def test_every_page_of_the_docs_is_in_the_table_of_contents():
    index = (DOCS / "index.md").read_text()
    listed = set(re.findall(r"^(\w+)$", index, flags=re.MULTILINE))
    missing = [p.stem for p in DOCS.glob("*.md") if p.stem != "index" and p.stem not in listed]
    assert not missing, f"pages missing from the toctree in docs/index.md: {missing}"


def test_every_figure_the_results_page_shows_exists():
    text = (DOCS / "results.md").read_text()
    shown = re.findall(r"!\[[^\]]*\]\((figures/[\w.-]+)\)", text)
    assert sorted(Path(s).stem for s in shown) == sorted(RESULT_FIGURES)
    missing = [s for s in shown if not (DOCS / s).is_file()]
    assert not missing, (f"docs/results.md shows {missing}, which are not in docs/; copy them from a default "
                         "sweep: tinylora sweep && cp runs/sweep/figures/*.png docs/figures/")


# ---- 3. the tests the docs cite exist --------------------------------------------------------
def _test_names(path: Path) -> set[str]:
    """'test_x' for module-level tests and 'TestClass::test_x' for methods."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{m.name}" for m in node.body if isinstance(m, ast.FunctionDef))
    return names


def cited_tests() -> list[tuple[str, str, str | None]]:
    return [(page_id(p), m["file"], m["names"])
            for p in PAGES for m in TEST_REFERENCE.finditer(p.read_text())]


def test_every_test_the_docs_cite_exists():
    missing = []
    for page, file, name in cited_tests():
        path = ROOT / "tests" / file
        if not path.is_file() or (name and name not in _test_names(path)):
            missing.append(f"{page}: tests/{file}" + (f"::{name}" if name else ""))
    assert not missing, "the docs cite tests that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("path", CONCEPT_PAGES, ids=[page_id(p) for p in CONCEPT_PAGES])
def test_concept_page_cites_the_tests_that_show_its_claims(path):
    cited = [m for m in TEST_REFERENCE.finditer(path.read_text()) if m["names"]]
    assert len(cited) >= 2, (
        f"{page_id(path)} should name the tests (tests/test_x.py::test_name) that illustrate it")


# ---- 4. the numbers the docs state -----------------------------------------------------------
def test_analysis_page_spectrum_example_is_what_the_code_computes():
    from tinylora.experiments.analysis import cumulative_energy, effective_rank, energy_rank

    text = (DOCS / "analysis.md").read_text()
    assert "E = (0.64, 0.93, 1.0)" in text and "is 2; their effective rank is" in text and "≈ 2.75" in text
    s = np.array([3.0, 2.0, 1.0])
    np.testing.assert_allclose(cumulative_energy(s).round(2), [0.64, 0.93, 1.0])
    assert energy_rank(s, 0.9) == 2
    assert round(effective_rank(s), 2) == 2.75


def test_analysis_page_random_subspace_baselines_are_what_the_code_computes():
    from tinylora.experiments.analysis import random_subspace_similarity

    text = (DOCS / "analysis.md").read_text()
    assert ("d = 64 input features, i = 1 and j = 32 that is 0.5" in text
            and "0.25 for d = 32, i = 4, j = 8" in text)
    assert random_subspace_similarity(64, 1, 32) == pytest.approx(0.5)
    assert random_subspace_similarity(32, 4, 8) == pytest.approx(0.25)


def test_analysis_page_amplification_example_is_what_the_code_computes():
    from tinylora.experiments.analysis import amplification_factor

    text = (DOCS / "analysis.md").read_text()
    assert "the factor is 0.5/10 = 0.05" in text and "it is 0.5/0.01 = 50" in text
    W = np.diag([10.0, 5.0, 2.0, 1.0, 0.1, 0.01])
    e1, e6 = np.eye(6)[0], np.eye(6)[5]
    assert amplification_factor(0.5 * np.outer(e1, e1), W, 1).factor == pytest.approx(0.05)
    assert amplification_factor(0.5 * np.outer(e6, e6), W, 1).factor == pytest.approx(50.0)


def test_readme_trainable_count_for_rank_4_on_q_and_v_is_what_lora_counts():
    from tinylora import lora
    from tinylora.models import GPT, GPTConfig

    assert "trainable params: 8,192 ||" in (ROOT / "README.md").read_text()
    model = lora.apply_lora(GPT(GPTConfig.preset("base")),
                            lora.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    assert lora.count_parameters(model)[0] == 8_192


def test_corpora_page_vocabulary_and_held_out_counts_are_what_the_code_uses():
    from tinylora.corpora.arithmetic import prompt_split
    from tinylora.tokenizers import VOCAB

    text = (DOCS / "corpora.md").read_text()
    assert "(96 characters)" in text and "(1,219 of 12,195)" in text
    train, held_out = prompt_split()
    assert len(VOCAB) == 96
    assert (len(held_out), len(train) + len(held_out)) == (1_219, 12_195)
