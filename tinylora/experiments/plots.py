"""Figures, a CSV summary and a Markdown report, all from ``DIR/results.jsonl`` alone.

The code lives in one module per idea; this module gathers their names under the path that
the notebooks and docs have always imported:

- ``results``: the folder's file names, the task order, ``load_results``;
- ``summary``: ``summarize`` and ``write_summary_csv`` (one row per configuration, seeds pooled);
- ``report``: ``report_markdown`` and the ``interpret_*`` sentences;
- ``figures``: the ``figure_*`` functions and ``plot_all`` (built on ``drawing``).

>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> run = {"task": "domain", "method": "lora", "rank": 4, "seed": 0, "metrics": {"val_loss": 1.5}}
>>> with open(os.path.join(folder, "results.jsonl"), "w") as f:
...     _ = f.write(json.dumps(run) + "\\n")
>>> [row["mean"] for row in summarize(load_results(folder))]
[1.5]
"""
from __future__ import annotations

from .drawing import LOSS_LABEL
from .figures import (
    FIGURES,
    figure_budget,
    figure_delta_spectrum,
    figure_domain_metric_vs_rank,
    figure_parameters_vs_rank,
    figure_planted_knee,
    figure_scaling,
    figure_subspace_similarity,
    plot_all,
)
from .report import (
    KNEE_FACTOR,
    RECOVERY_TARGET,
    interpret_budget,
    interpret_loss_task,
    interpret_planted,
    interpret_scaling,
    report_markdown,
)
from .results import FIGURES_DIR, RESULTS_NAME, load_results
from .results import TASKS as TASK_ORDER
from .summary import SUMMARY_COLUMNS, MissingData, main_metric, summarize, write_summary_csv

__all__ = [
    "load_results", "main_metric", "summarize", "write_summary_csv", "report_markdown", "plot_all",
    "MissingData", "FIGURES", "FIGURES_DIR", "RESULTS_NAME", "TASK_ORDER", "LOSS_LABEL", "KNEE_FACTOR",
    "RECOVERY_TARGET", "SUMMARY_COLUMNS", "interpret_planted", "interpret_loss_task", "interpret_budget",
    "interpret_scaling", "figure_domain_metric_vs_rank", "figure_parameters_vs_rank", "figure_delta_spectrum",
    "figure_subspace_similarity", "figure_planted_knee", "figure_budget", "figure_scaling",
]
