"""Sphinx configuration for the tinylora docs.

Build (offline; nothing is downloaded):  python -m sphinx -W --keep-going -b html docs docs/_build/html
The pages are plain Markdown (MyST), so they also read well on GitHub.
"""
from __future__ import annotations

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))  # import tinylora from this checkout

import tinylora  # noqa: E402

project = "tinylora"
author = "the tinylora authors"
copyright = "tinylora authors, MIT licence"
release = version = tinylora.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",  # the browser loads MathJax when a page shows math; the build fetches nothing
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "figures", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # a method without its own docstring shows none, not its base class's
napoleon_google_docstring = True
napoleon_numpy_docstring = True

html_theme = "alabaster"
html_title = f"tinylora {release}"
html_static_path: list[str] = []

# docs/results.md shows the default sweep's figures, copied into docs/figures/ from a real sweep
# (see that page). A checkout without them still builds cleanly; tests/test_docs.py reports them.
RESULT_FIGURES = ("domain_metric_vs_rank", "parameters_vs_rank", "delta_spectrum", "subspace_similarity",
                  "planted_knee")
missing_figures = [n for n in RESULT_FIGURES if not os.path.isfile(os.path.join(DOCS, "figures", f"{n}.png"))]
suppress_warnings = ["image.not_readable"] if missing_figures else []
