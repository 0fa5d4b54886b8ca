"""The pieces every figure of a sweep is built from: a captioned figure, rank axes, reference lines, files.

Figures are ``matplotlib.figure.Figure`` objects with an Agg canvas (no pyplot), so drawing
never touches the global backend of a notebook that imports this module.
"""
from __future__ import annotations

import io
import math
import textwrap

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ..io import atomic_writer
from .results import naming
from .summary import _diverged_note, _fmt

LOSS_LABEL = "held-out loss (nats per character)"


def _figure(title: str, caption: str, ncols: int = 1, nrows: int = 1, width: float = 6.4,
            height: float = 4.4):
    """A Figure with a bold title on top and a wrapped caption under the axes."""
    caption = textwrap.fill(caption, width=int(width * 17))
    title = textwrap.fill(title, width=int(width * 10))
    n_lines = caption.count("\n") + 1
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)                 # the non-interactive renderer, without pyplot's global state
    bottom = (0.12 + 0.16 * n_lines) / height
    fig.set_layout_engine("constrained", rect=(0, bottom, 1, 1 - bottom))  # (left, bottom, width, height)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    fig.text(0.5, 0.02, caption, ha="center", va="bottom", fontsize=8, color="0.25")
    return fig, axes


def _log2_rank_axis(ax, ranks) -> None:
    ax.set_xscale("log", base=2)
    ranks = sorted(set(ranks))
    ax.set_xticks(ranks, labels=[str(r) for r in ranks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("LoRA rank r (log₂ scale)")


def _errorbar(ax, rows: list[dict], key_mean: str = "mean", **style) -> None:
    ranks = [r["rank"] for r in rows]
    means = np.array([r[key_mean] for r in rows])
    if key_mean == "mean" and any(r["n_seeds"] > 1 for r in rows):
        low = means - np.array([r["min"] for r in rows])
        high = np.array([r["max"] for r in rows]) - means
        ax.errorbar(ranks, means, yerr=[low, high], capsize=3, marker="o", **style)
    else:
        ax.plot(ranks, means, marker="o", **style)


def _reference_lines(ax, full: dict | None, base: float | None, key: str = "mean",
                     vertical: bool = False) -> None:
    line = ax.axvline if vertical else ax.axhline
    if full is not None and full.get(key) is not None:
        line(full[key], color="C3", linestyle="--", label=f"full fine-tuning ({_fmt(full[key], 3)})")
        if key == "mean" and full["n_seeds"] > 1:
            (ax.axvspan if vertical else ax.axhspan)(full["min"], full["max"], color="C3", alpha=0.12)
    if base is not None:
        line(base, color="0.4", linestyle=":", label=f"frozen base model ({_fmt(base, 3)})")


def _seed_note(rows: list[dict], all_rows: list[dict] | None = None) -> str:
    """How many seeds each point pools, and which runs diverged (``all_rows``: every row of the task)."""
    n = max((r["n_seeds"] for r in rows), default=1)
    note = f"Points are means over {n} seeds; bars span min–max." if n > 1 else "One seed per point."
    diverged = _diverged_note(all_rows or rows)
    return f"{note} {diverged}" if diverged else note



def _some_ticks(n: int, most: int = 9) -> list[int]:
    step = max(1, math.ceil(n / most))
    return sorted({1, n, *range(step, n + 1, step)})


def _save(fig: Figure, stem: str, formats: tuple) -> list[str]:
    """Write ``stem.FMT`` for each format (150 dpi), each atomically; return the paths."""
    paths = []
    # a fixed hash salt and no date keep SVG files identical from one run to the next
    with rc_context({"svg.hashsalt": "tinylora"}):
        for fmt in formats:
            path = f"{stem}.{fmt}"
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
            with naming(path), atomic_writer(path) as f:
                f.write(buffer.getvalue())
            paths.append(path)
    return paths
