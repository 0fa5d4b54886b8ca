"""Figures, a CSV summary and a Markdown report, all from ``DIR/results.jsonl`` alone.

Anyone holding a results file can regenerate every figure: nothing here reads a model or a
checkpoint. Each figure is drawn only when its data is present; a missing field (an older or
partial run) skips that figure with a note instead of crashing.

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas (no pyplot), so drawing
never touches the global backend of a notebook that imports this module.

>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> run = {"task": "domain", "method": "lora", "rank": 4, "seed": 0, "metrics": {"val_loss": 1.5}}
>>> with open(os.path.join(folder, "results.jsonl"), "w") as f:
...     _ = f.write(json.dumps(run) + "\\n")
>>> [row["mean"] for row in summarize(load_results(folder))]
[1.5]
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import textwrap
import warnings
from collections import defaultdict

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ..io import atomic_writer
from .analysis import (
    effective_rank, energy_rank, cumulative_energy, knee_rank, recovered_fraction, subspace_similarity_grid,
)

__all__ = [
    "load_results", "main_metric", "summarize", "write_summary_csv", "report_markdown", "plot_all",
    "MissingData", "FIGURES",
]

RESULTS_NAME = "results.jsonl"      # the file the sweep writes (tinylora.experiments.sweep)
FIGURES_DIR = "figures"
TASK_ORDER = ("planted", "domain", "budget", "scaling")
LOSS_LABEL = "held-out loss (nats per character)"
KNEE_FACTOR = 5.0  # below the knee errors are 50-100x the floor; at and above it, 1-2x
RECOVERY_TARGET = 0.9
SUMMARY_COLUMNS = ("task", "method", "rank", "targets", "alpha", "rslora", "n_seeds", "metric", "mean", "min",
                   "max", "accuracy", "trainable_params", "trainable_pct", "adapter_bytes", "seconds")


class MissingData(Exception):
    """A figure or sentence cannot be made because the results lack the data it needs."""


# --------------------------------------------------------------------------- reading runs

def load_results(directory) -> list[dict]:
    """Every run in ``DIR/results.jsonl``, in file order.

    A line that is not a JSON object with a ``task`` and a ``method`` (say, one cut short by a
    crash) is skipped with a warning naming its line number. Raises FileNotFoundError when the
    file is absent and ValueError when it holds no usable run.
    """
    path = os.path.join(os.fspath(directory), RESULTS_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {RESULTS_NAME} in {os.fspath(directory)!r}: run `tinylora sweep --out DIR` "
                                f"first, or point at a folder a sweep wrote")
    runs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            problem = _parse_problem(line)
            if problem:
                warnings.warn(f"{path}:{lineno}: skipped a line ({problem})", stacklevel=2)
                continue
            runs.append(json.loads(line))
    if not runs:
        raise ValueError(f"{path} holds no finished runs")
    return runs


def _parse_problem(line: str) -> str | None:
    try:
        run = json.loads(line)
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err.msg}"
    if not isinstance(run, dict):
        return f"a JSON {type(run).__name__}, not an object"
    missing = [k for k in ("task", "method") if not isinstance(run.get(k), str)]
    return f"no {' or '.join(missing)}" if missing else None


def main_metric(task: str) -> str:
    """The number each task is judged by: ``rel_error`` for planted, ``val_loss`` otherwise."""
    return "rel_error" if task == "planted" else "val_loss"


def _number(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _metric(run: dict, name: str) -> float | None:
    metrics = run.get("metrics")
    return _number(metrics.get(name)) if isinstance(metrics, dict) else None


def _targets(run: dict) -> str:
    if run.get("method") == "full":
        return "planted layers, full rank" if run.get("task") == "planted" else "all weights"
    targets = run.get("targets")
    if isinstance(targets, str):
        return targets
    return "+".join(targets) if isinstance(targets, list) and targets else "?"


def _rank(run: dict) -> int | None:
    rank = run.get("rank")
    return int(rank) if isinstance(rank, int) and not isinstance(rank, bool) and run.get("method") == "lora" else None


def _variant(run: dict) -> tuple:
    """What besides rank and seed tells two LoRA runs apart: (targets, alpha, rslora)."""
    if run.get("method") == "full":
        return (_targets(run), None, None)
    return (_targets(run), _number(run.get("alpha")), bool(run.get("rslora", False)))


def _scale_label(alpha, rslora) -> str:
    """"α/r, α=16" (LoRA) or "α/√r, α=16" (rsLoRA)."""
    return "–" if alpha is None else f"α/{'√r' if rslora else 'r'}, α={alpha:g}"


def _variant_label(variant: tuple) -> str:
    targets, alpha, rslora = variant
    return targets if alpha is None else f"{targets}; {_scale_label(alpha, rslora)}"


# --------------------------------------------------------------------------- summary rows

def _task_key(task: str) -> tuple:
    return (TASK_ORDER.index(task), "") if task in TASK_ORDER else (len(TASK_ORDER), task)


def _row_key(row: dict) -> tuple:
    full = row["method"] == "full"
    return (_task_key(row["task"]), full, row["targets"], bool(row["rslora"]), row["alpha"] or 0.0, row["rank"] or 0)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _first(runs, field: str):
    for run in runs:
        value = _number(run.get(field))
        if value is not None:
            return value
    return None


def _trainable_pct(runs) -> float | None:
    fraction = _first(runs, "trainable_fraction")
    if fraction is not None:
        return 100.0 * fraction
    trainable, total = _first(runs, "trainable_params"), _first(runs, "total_params")
    return 100.0 * trainable / total if trainable is not None and total else None


def _summary_row(task: str, method: str, rank, variant: tuple, runs: list[dict]) -> dict:
    metric = main_metric(task)
    values = [v for v in (_metric(r, metric) for r in runs) if v is not None]
    trainable = _first(runs, "trainable_params")
    adapter = _first(runs, "adapter_bytes")
    return {
        "task": task, "method": method, "rank": rank, "targets": variant[0], "alpha": variant[1],
        "rslora": variant[2], "n_seeds": len(values), "metric": metric,
        "mean": float(np.mean(values)) if values else None,
        "min": min(values) if values else None, "max": max(values) if values else None,
        "accuracy": _mean(_metric(r, "accuracy") for r in runs),
        "trainable_params": int(trainable) if trainable is not None else None,
        "trainable_pct": _trainable_pct(runs),
        "adapter_bytes": int(adapter) if adapter is not None else None,
        "seconds": _mean(_number(r.get("seconds")) for r in runs),
    }


def summarize(results: list[dict]) -> list[dict]:
    """One row per (task, method, rank, targets, alpha, rslora), seeds pooled.

    Each row holds ``n_seeds`` (runs that have the metric), the task's main metric (see
    ``main_metric``) as ``mean``/``min``/``max``, mean ``accuracy`` (None if the task has none),
    ``trainable_params``, ``trainable_pct``, ``adapter_bytes`` and mean ``seconds``. Rows come
    sorted by task, LoRA before full fine-tuning, then by targets and rank.
    """
    groups = defaultdict(list)
    for run in results:
        groups[(run["task"], run["method"], _rank(run), _variant(run))].append(run)
    rows = [_summary_row(*key, runs) for key, runs in groups.items()]
    return sorted(rows, key=_row_key)


def write_summary_csv(results: list[dict], path) -> None:
    """Write ``summarize(results)`` to ``path`` as CSV (columns ``SUMMARY_COLUMNS``), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in summarize(results):
        writer.writerow({k: "" if row[k] is None else row[k] for k in SUMMARY_COLUMNS})
    with atomic_writer(path, "w") as f:
        f.write(buffer.getvalue())


# --------------------------------------------------------------------------- series for one task

def _task_runs(results, task: str) -> list[dict]:
    return [r for r in results if r.get("task") == task]


def _lora_series(rows: list[dict], task: str) -> dict:
    """variant -> rows of LoRA runs with a metric, sorted by rank."""
    series = defaultdict(list)
    for row in rows:
        if row["task"] == task and row["method"] == "lora" and row["rank"] is not None and row["mean"] is not None:
            series[(row["targets"], row["alpha"], row["rslora"])].append(row)
    return {v: sorted(rs, key=lambda r: r["rank"]) for v, rs in series.items()}


def _required_lora_series(rows: list[dict], task: str) -> dict:
    """``_lora_series``, or MissingData naming the task and its metric when it has no LoRA run."""
    series = _lora_series(rows, task)
    if not series:
        metric = "rel_error" if task == "planted" else "val_loss"
        raise MissingData(f"no LoRA runs of the {task} task with a {metric}")
    return series


def _main_variant(series: dict) -> tuple:
    """The LoRA variant with the most ranks (the sweep's default targets, usually)."""
    return max(sorted(series), key=lambda v: len(series[v]))


def _full_row(rows: list[dict], task: str) -> dict | None:
    return next((r for r in rows if r["task"] == task and r["method"] == "full" and r["mean"] is not None), None)


def _base_loss(runs: list[dict]) -> float | None:
    return _mean(_metric(r, "base_val_loss") for r in runs)


def _k_star(runs: list[dict]) -> int | None:
    for run in runs:
        planted = run.get("planted")
        if isinstance(planted, dict) and isinstance(planted.get("k_star"), int):
            return planted["k_star"]
    return None


# --------------------------------------------------------------------------- the Markdown report

def _fmt(x, digits: int = 4) -> str:
    return "–" if x is None else f"{x:#.{digits}g}"


def _fmt_pct(pct: float) -> str:
    return f"{pct:.1f}%" if pct >= 1 else f"{pct:.2g}%"


def _fmt_int(x) -> str:
    return "–" if x is None else f"{x:,}"


def _fmt_spread(row: dict) -> str:
    if row["mean"] is None:
        return "–"
    if row["n_seeds"] > 1:
        return f"{_fmt(row['mean'])} ({_fmt(row['min'])}–{_fmt(row['max'])})"
    return _fmt(row["mean"])


def _markdown_table(rows: list[dict]) -> list[str]:
    metric = rows[0]["metric"]
    lines = [f"| method | rank | targets | scaling | seeds | {metric} mean (min–max) | accuracy | trainable params "
             "| trainable % | adapter bytes | seconds |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        pct = "–" if r["trainable_pct"] is None else f"{r['trainable_pct']:.3g}"
        lines.append(f"| {r['method']} | {r['rank'] if r['rank'] is not None else '–'} | {r['targets']} "
                     f"| {_scale_label(r['alpha'], r['rslora'])} "
                     f"| {r['n_seeds']} | {_fmt_spread(r)} | {_fmt(r['accuracy'], 3)} "
                     f"| {_fmt_int(r['trainable_params'])} | {pct} | {_fmt_int(r['adapter_bytes'])} "
                     f"| {_fmt(r['seconds'], 3)} |")
    return lines


def interpret_planted(results: list[dict], rows: list[dict]) -> str:
    """"knee at r=4 (k*=4)": the first rank within ``KNEE_FACTOR``× full fine-tuning's error."""
    series = _required_lora_series(rows, "planted")
    curve = series[_main_variant(series)]
    full = _full_row(rows, "planted")
    floor = full["mean"] if full else min(r["mean"] for r in curve)
    floor_name = "full fine-tuning's" if full else "the smallest"
    knee = knee_rank([r["rank"] for r in curve], [r["mean"] for r in curve], floor=floor, factor=KNEE_FACTOR)
    k_star = _k_star(_task_runs(results, "planted"))
    planted = f" (k*={k_star})" if k_star is not None else ""
    if knee is None:
        return (f"no knee: no rank reaches {KNEE_FACTOR:g}× {floor_name} relative error ({_fmt(floor, 3)})"
                f"{planted}.")
    return (f"knee at r={knee}{planted}: the smallest rank whose relative error is within {KNEE_FACTOR:g}× "
            f"{floor_name} ({_fmt(floor, 3)}).")


def _recovery_choice(curve: list[dict], base: float, full: float) -> tuple[dict, float]:
    fractions = [recovered_fraction(base, r["mean"], full) for r in curve]
    for row, fraction in zip(curve, fractions):
        if fraction >= RECOVERY_TARGET:
            return row, fraction
    best = int(np.argmax(fractions))
    return curve[best], fractions[best]


def interpret_loss_task(results: list[dict], rows: list[dict], task: str) -> str:
    """"LoRA r=4 recovers 93% of full fine-tuning's improvement with 1.0% of parameters trainable"."""
    series = _required_lora_series(rows, task)
    curve = series[_main_variant(series)]
    full, base = _full_row(rows, task), _base_loss(_task_runs(results, task))
    if full is None or base is None or base == full["mean"]:
        best = min(curve, key=lambda r: r["mean"])
        why = "no full fine-tuning run" if full is None else "no base loss" if base is None else "full = base"
        return f"lowest held-out loss: LoRA r={best['rank']} ({_fmt(best['mean'])}); {why} to compare with."
    row, fraction = _recovery_choice(curve, base, full["mean"])
    pct = f" with {_fmt_pct(row['trainable_pct'])} of parameters trainable" if row["trainable_pct"] is not None else ""
    return (f"LoRA r={row['rank']} recovers {100 * fraction:.0f}% of full fine-tuning's improvement{pct} "
            f"(held-out loss: base {_fmt(base)}, LoRA {_fmt(row['mean'])}, full {_fmt(full['mean'])}).")


def interpret_budget(results: list[dict], rows: list[dict]) -> str:
    """Which targets/rank combination reached the lowest held-out loss."""
    lora = [r for r in rows if r["task"] == "budget" and r["method"] == "lora" and r["mean"] is not None]
    if not lora:
        raise MissingData("no LoRA runs with a val_loss")
    best = min(lora, key=lambda r: r["mean"])
    return (f"lowest held-out loss: {best['targets']} at r={best['rank']} ({_fmt(best['mean'])}, "
            f"{_fmt_int(best['trainable_params'])} trainable parameters).")


def interpret_scaling(results: list[dict], rows: list[dict]) -> str:
    """How much the held-out loss moves across ranks under α/r and under α/√r."""
    series = _lora_series(rows, "scaling")
    spreads = [f"{_scale_label(v[1], v[2])}: {_fmt(max(r['mean'] for r in c) - min(r['mean'] for r in c), 3)}"
               for v, c in sorted(series.items()) if len(c) > 1]
    if not spreads:
        raise MissingData("fewer than two ranks per scaling rule")
    return "spread of held-out loss across ranks (smaller = more stable): " + "; ".join(spreads) + "."


def _interpretation(results, rows, task: str) -> str:
    try:
        if task == "planted":
            return interpret_planted(results, rows)
        if task == "budget":
            return interpret_budget(results, rows)
        if task == "scaling":
            return interpret_scaling(results, rows)
        return interpret_loss_task(results, rows, task)
    except MissingData as err:
        return f"(no interpretation: {err}.)"


def report_markdown(directory) -> str:
    """A Markdown section per task: a one-line interpretation, then the ``summarize`` table."""
    results = load_results(directory)
    rows = summarize(results)
    tasks = sorted({r["task"] for r in rows}, key=_task_key)
    lines = [f"# tinylora sweep: {os.fspath(directory)}", "", f"{len(results)} runs.", ""]
    for task in tasks:
        task_rows = [r for r in rows if r["task"] == task]
        lines += [f"## {task}", "", _interpretation(results, rows, task), ""]
        lines += _markdown_table(task_rows) + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figure helpers

def _figure(title: str, caption: str, ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 4.4):
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


def _reference_lines(ax, full: dict | None, base: float | None, key: str = "mean", vertical: bool = False) -> None:
    line = ax.axvline if vertical else ax.axhline
    if full is not None and full.get(key) is not None:
        line(full[key], color="C3", linestyle="--", label=f"full fine-tuning ({_fmt(full[key], 3)})")
        if key == "mean" and full["n_seeds"] > 1:
            (ax.axvspan if vertical else ax.axhspan)(full["min"], full["max"], color="C3", alpha=0.12)
    if base is not None:
        line(base, color="0.4", linestyle=":", label=f"frozen base model ({_fmt(base, 3)})")


def _seed_note(rows: list[dict]) -> str:
    n = max((r["n_seeds"] for r in rows), default=1)
    return f"Points are means over {n} seeds; bars span min–max." if n > 1 else "One seed per point."


def _preferred_task(runs: list[dict], order=("domain", "planted", "budget", "scaling")) -> str | None:
    tasks = {r.get("task") for r in runs}
    return next((t for t in order if t in tasks), min(tasks) if tasks else None)


# --------------------------------------------------------------------------- the figures

def figure_domain_metric_vs_rank(results: list[dict]) -> Figure:
    """Held-out loss (and accuracy, if the task has one) of the domain task against LoRA rank."""
    rows = summarize(_task_runs(results, "domain"))
    series = _required_lora_series(rows, "domain")
    full, base = _full_row(rows, "domain"), _base_loss(_task_runs(results, "domain"))
    lora_rows = [r for c in series.values() for r in c]
    has_accuracy = any(r["accuracy"] is not None for r in lora_rows)
    fig, axes = _figure("Domain adaptation: held-out loss vs LoRA rank",
                        f"{_seed_note(lora_rows)} Lower is better. Dashed: full fine-tuning (every weight trained); "
                        "dotted: the frozen base model before fine-tuning. The gap between them is what LoRA can "
                        "recover.", ncols=2 if has_accuracy else 1, width=10 if has_accuracy else 6.4)
    ax = axes[0, 0]
    for variant, curve in sorted(series.items()):
        _errorbar(ax, curve, label=f"LoRA ({_variant_label(variant)})")
    _reference_lines(ax, full, base)
    _log2_rank_axis(ax, [r["rank"] for r in lora_rows])
    ax.set_ylabel(LOSS_LABEL)
    ax.set_title("held-out loss", fontsize=9)
    ax.legend(fontsize=7)
    if has_accuracy:
        _accuracy_panel(axes[0, 1], series, full)
    return fig


def _accuracy_panel(ax, series: dict, full: dict | None) -> None:
    for variant, curve in sorted(series.items()):
        rows = [r for r in curve if r["accuracy"] is not None]
        if rows:
            ax.plot([r["rank"] for r in rows], [r["accuracy"] for r in rows], marker="s",
                    label=f"LoRA ({_variant_label(variant)})")
    _reference_lines(ax, full, None, key="accuracy")
    _log2_rank_axis(ax, [r["rank"] for c in series.values() for r in c])
    ax.set_ylabel("accuracy (fraction of answers correct)")
    ax.set_title("accuracy (higher is better)", fontsize=9)
    ax.legend(fontsize=7)


def figure_parameters_vs_rank(results: list[dict]) -> Figure:
    """Trainable parameters and adapter file size against LoRA rank, against full fine-tuning."""
    lora = [r for r in results if r.get("method") == "lora" and _number(r.get("trainable_params")) is not None]
    task = _preferred_task(lora)
    if task is None:
        raise MissingData("no LoRA run records trainable_params")
    rows = summarize(_task_runs(results, task))
    series = _lora_series(rows, task) or _param_series(rows, task)
    curve = [r for r in series[_main_variant(series)] if r["trainable_params"] is not None]
    if not curve:
        raise MissingData(f"no LoRA run of the {task} task records trainable_params")
    task_runs = _task_runs(results, task)
    full = _full_row(rows, task)
    full_params = full["trainable_params"] if full else _first(task_runs, "total_params")
    has_bytes = any(r["adapter_bytes"] is not None for r in curve)
    fig, axes = _figure(f"What LoRA trains and stores, by rank ({task} task)",
                        "Trainable parameters grow linearly with r: each adapted (out × in) layer adds r·(in + out). "
                        "Labels give the trainable share of all parameters. Dashed: full fine-tuning, which trains "
                        "and saves every weight.", ncols=2 if has_bytes else 1, width=10 if has_bytes else 6.4)
    ax = axes[0, 0]
    ranks = [r["rank"] for r in curve]
    ax.plot(ranks, [r["trainable_params"] for r in curve], marker="o", label="LoRA")
    for r in curve:
        if r["trainable_pct"] is not None:
            ax.annotate(_fmt_pct(r["trainable_pct"]), (r["rank"], r["trainable_params"]), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")
    if full_params is not None:
        ax.axhline(full_params, color="C3", linestyle="--", label=f"full fine-tuning ({int(full_params):,})")
    ax.set_yscale("log")
    _log2_rank_axis(ax, ranks)
    ax.set_ylabel("trainable parameters (count, log scale)")
    ax.set_title(f"trainable parameters ({_variant_label(_main_variant(series))})", fontsize=9)
    ax.legend(fontsize=7)
    if has_bytes:
        _bytes_panel(axes[0, 1], curve, _first(task_runs, "full_checkpoint_bytes"))
    return fig


def _param_series(rows: list[dict], task: str) -> dict:
    """Rows of LoRA runs that have parameter counts but no metric (the metric is not needed here)."""
    series = defaultdict(list)
    for row in rows:
        if row["task"] == task and row["method"] == "lora" and row["rank"] is not None:
            series[(row["targets"], row["alpha"], row["rslora"])].append(row)
    return {v: sorted(rs, key=lambda r: r["rank"]) for v, rs in series.items()}


def _bytes_panel(ax, curve: list[dict], full_bytes: float | None) -> None:
    rows = [r for r in curve if r["adapter_bytes"] is not None]
    ax.plot([r["rank"] for r in rows], [r["adapter_bytes"] for r in rows], marker="o", color="C1",
            label="LoRA adapter file")
    if full_bytes is not None:
        ax.axhline(full_bytes, color="C3", linestyle="--", label=f"full checkpoint ({int(full_bytes):,} B)")
    ax.set_yscale("log")
    _log2_rank_axis(ax, [r["rank"] for r in rows])
    ax.set_ylabel("file size on disk (bytes, log scale)")
    ax.set_title("what must be saved per fine-tuned task", fontsize=9)
    ax.legend(fontsize=7)


def _spectrum_run(results: list[dict]) -> dict:
    candidates = [r for r in results if r.get("method") == "full" and isinstance(r.get("analysis"), dict)
                  and isinstance(r["analysis"].get("delta_spectra"), dict) and r["analysis"]["delta_spectra"]]
    if not candidates:
        raise MissingData("no full fine-tuning run records analysis.delta_spectra")
    task = _preferred_task(candidates)
    return min((r for r in candidates if r.get("task") == task), key=lambda r: r.get("seed", 0))


def figure_delta_spectrum(results: list[dict], max_layers: int = 4) -> Figure:
    """Singular values and cumulative energy of full fine-tuning's ΔW, per layer, vs a random matrix."""
    run = _spectrum_run(results)
    spectra = run["analysis"]["delta_spectra"]
    randoms = run["analysis"].get("random_spectra") or {}
    layers = [n for n in sorted(spectra) if np.sum(np.asarray(spectra[n], dtype=float)) > 0][:max_layers]
    if not layers:
        raise MissingData("every recorded ΔW spectrum is zero")
    fig, axes = _figure("Is full fine-tuning's update low rank? Spectrum of ΔW = W_ft − W0",
                        f"{run['task']} task, seed {run.get('seed', '?')}. Top: singular values divided by the largest (log scale). "
                        "Bottom: share of ‖ΔW‖²_F held by the top k directions. Dashed: a Gaussian matrix with ΔW's "
                        "shape and norm (no low-rank structure). A curve that falls faster than the dashed one, and "
                        "a small effective rank, mean a few directions carry the update: LoRA's premise.",
                        ncols=len(layers), nrows=2, width=max(6.4, 3.4 * len(layers)), height=6.4)
    for col, layer in enumerate(layers):
        _spectrum_panels(axes[0, col], axes[1, col], layer, np.asarray(spectra[layer], dtype=float),
                         np.asarray(randoms[layer], dtype=float) if layer in randoms else None)
    return fig


def _spectrum_panels(ax_s, ax_e, layer: str, s: np.ndarray, random: np.ndarray | None) -> None:
    curves = [("ΔW", s, "-")] + ([("random", random, "--")] if random is not None and random.sum() > 0 else [])
    for name, values, style in curves:
        positive = values > 0
        k = np.arange(1, values.size + 1)
        ax_s.plot(k[positive], values[positive] / values[0], style,
                  label=f"{name} (effective rank {effective_rank(values):.1f})")
        energy = cumulative_energy(values)
        ax_e.plot(k, energy, style,
                  label=f"{name}: 90% in top {energy_rank(values, 0.9)}")
    ax_s.set_yscale("log")
    ax_s.set_title(layer, fontsize=9)
    ax_s.set_xlabel("index k of the singular value")
    ax_s.set_ylabel("s_k / s_1 (log scale)")
    ax_s.legend(fontsize=7)
    ax_e.axhline(0.9, color="0.6", linestyle=":")
    ax_e.set_ylim(0, 1.02)
    ax_e.set_xlabel("number of directions k")
    ax_e.set_ylabel("cumulative energy (fraction of ‖ΔW‖²_F)")
    ax_e.legend(fontsize=7)


def _adapter_a(run: dict) -> dict:
    analysis = run.get("analysis")
    found = analysis.get("adapter_A") if isinstance(analysis, dict) else None
    return found if isinstance(found, dict) else {}


def _similarity_pair(results: list[dict]) -> tuple[dict, dict, list[str]]:
    """Two LoRA runs of different rank (same task and seed) that share at least one recorded A."""
    lora = [r for r in results if r.get("method") == "lora" and _rank(r) is not None and _adapter_a(r)]
    task = _preferred_task(lora)
    by_seed = defaultdict(dict)
    for run in lora:
        if run.get("task") == task:
            by_seed[run.get("seed", 0)].setdefault(_rank(run), run)
    for seed in sorted(by_seed, key=str):
        ranks = sorted(by_seed[seed])
        if len(ranks) < 2:
            continue
        large = ranks[-1]
        small = 8 if 8 in ranks[:-1] else ranks[0]
        a, b = by_seed[seed][small], by_seed[seed][large]
        layers = sorted(set(_adapter_a(a)) & set(_adapter_a(b)))
        if layers:
            return a, b, layers
    raise MissingData("no two LoRA runs of different rank (same task and seed) record analysis.adapter_A "
                      "for a common layer")


def figure_subspace_similarity(results: list[dict], max_layers: int = 2) -> Figure:
    """Heat map of φ(A_small, A_large, i, j) (LoRA paper, Fig. 3) for one or two layers."""
    small, large, layers = _similarity_pair(results)
    layers = layers[:max_layers]
    A_small = {n: np.asarray(_adapter_a(small)[n], dtype=float) for n in layers}   # (r_small, in)
    A_large = {n: np.asarray(_adapter_a(large)[n], dtype=float) for n in layers}   # (r_large, in)
    d = A_small[layers[0]].shape[1]
    rs, rl = _rank(small), _rank(large)
    fig, axes = _figure(f"Do rank-{rs} and rank-{rl} adapters learn the same directions? "
                        f"φ(A_r={rs}, A_r={rl}, i, j)  [random subspaces: max(i, j)/d, d={d}]",
                        f"{small['task']} task, seed {small.get('seed', '?')}. Cell (i, j) compares the top-i "
                        f"directions of the rank-{rs} A with the top-j of the rank-{rl} A: 1 = one subspace "
                        "contains the other, 0 = orthogonal. Random subspaces give max(i, j)/d, at most "
                        f"{rl / d:.2f} here. A bright first column means the top direction is shared.",
                        ncols=len(layers), width=max(6.4, 5.2 * len(layers)), height=4.8)
    for col, layer in enumerate(layers):
        _similarity_panel(fig, axes[0, col], layer, subspace_similarity_grid(A_small[layer], A_large[layer]))
    return fig


def _similarity_panel(fig, ax, layer: str, grid: np.ndarray) -> None:
    ri, rj = grid.shape
    image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest",
                      extent=(0.5, rj + 0.5, ri + 0.5, 0.5))
    ax.set_xticks(_some_ticks(rj))
    ax.set_yticks(_some_ticks(ri))
    ax.set_xlabel("j (top-j directions of the larger-rank A)")
    ax.set_ylabel("i (top-i directions of the smaller-rank A)")
    ax.set_title(layer, fontsize=9)
    fig.colorbar(image, ax=ax, label="φ (0 = orthogonal, 1 = shared)")


def _some_ticks(n: int, most: int = 9) -> list[int]:
    step = max(1, math.ceil(n / most))
    return sorted({1, n, *range(step, n + 1, step)})


def figure_planted_knee(results: list[dict]) -> Figure:
    """Relative error of the planted task against LoRA rank, with the planted rank k* marked."""
    rows = summarize(_task_runs(results, "planted"))
    series = _required_lora_series(rows, "planted")
    full, k_star = _full_row(rows, "planted"), _k_star(_task_runs(results, "planted"))
    lora_rows = [r for c in series.values() for r in c]
    fig, axes = _figure("Recovering a planted rank-k* update: error vs LoRA rank",
                        f"A rank-k* change ΔW* was planted in the target layers. {_seed_note(lora_rows)} Relative "
                        "error 1 = no better than the un-adapted model, 0 = perfect. The error should fall steeply "
                        "until r reaches k* and then flatten near full fine-tuning's floor (dashed).")
    ax = axes[0, 0]
    for variant, curve in sorted(series.items()):
        label = "LoRA" if len(series) == 1 else f"LoRA ({_variant_label(variant)})"
        _errorbar(ax, curve, label=f"{label}: output error")
    _weight_error_line(ax, _task_runs(results, "planted"), series)
    _reference_lines(ax, full, None)
    ax.axhline(1.0, color="0.4", linestyle=":", label="un-adapted base (1.0)")
    if k_star is not None:
        ax.axvline(k_star, color="C2", linestyle="-.", label=f"planted rank k* = {k_star}")
    if all(r["min"] > 0 for r in lora_rows):
        ax.set_yscale("log")
    _log2_rank_axis(ax, [r["rank"] for r in lora_rows])
    ax.set_ylabel("relative error (1 = base model; log scale)")
    ax.legend(fontsize=7)
    return fig


def _weight_error_line(ax, runs: list[dict], series: dict) -> None:
    variant = _main_variant(series)
    by_rank = defaultdict(list)
    for run in runs:
        value = _metric(run, "weight_error")
        if run.get("method") == "lora" and _rank(run) is not None and _variant(run) == variant and value is not None:
            by_rank[_rank(run)].append(value)
    if by_rank:
        ranks = sorted(by_rank)
        ax.plot(ranks, [np.mean(by_rank[r]) for r in ranks], marker="^", linestyle="--", color="C1",
                label="‖ΔW − ΔW*‖_F / ‖ΔW*‖_F (weight error)")


def figure_budget(results: list[dict]) -> Figure:
    """Held-out loss of each targets/rank combination of the budget task, as horizontal bars."""
    rows = [r for r in summarize(_task_runs(results, "budget")) if r["method"] == "lora" and r["mean"] is not None]
    if not rows:
        raise MissingData("no LoRA runs of the budget task with a val_loss")
    all_rows = summarize(_task_runs(results, "budget"))
    rows = sorted(rows, key=lambda r: (r["trainable_params"] or 0, r["targets"], r["rank"] or 0))
    labels = [f"{r['targets']}  r={r['rank']}  ({_fmt_int(r['trainable_params'])} params)" for r in rows]
    means = np.array([r["mean"] for r in rows])
    spread = np.array([[r["mean"] - r["min"], r["max"] - r["mean"]] for r in rows]).T
    fig, axes = _figure("Where to spend a parameter budget: which layers, what rank?",
                        f"Each bar is one choice of adapted layers and rank (budget task). {_seed_note(rows)} "
                        "Shorter bars are better. Dashed: full fine-tuning; dotted: the frozen base model.",
                        width=8.0, height=max(3.6, 1.6 + 0.38 * len(rows)))
    ax = axes[0, 0]
    ax.barh(np.arange(len(rows)), means, xerr=spread if any(r["n_seeds"] > 1 for r in rows) else None,
            color="C0", capsize=3)
    ax.set_yticks(np.arange(len(rows)), labels=labels, fontsize=8)
    ax.invert_yaxis()
    _reference_lines(ax, _full_row(all_rows, "budget"), _base_loss(_task_runs(results, "budget")), vertical=True)
    lowest = min([float(means.min())] + [float(line.get_xdata()[0]) for line in ax.get_lines()])
    ax.set_xlim(left=0.9 * lowest)      # bars start near the data, so small differences show
    ax.set_xlabel(LOSS_LABEL)
    if ax.get_lines():
        ax.legend(fontsize=7)
    return fig


def figure_scaling(results: list[dict]) -> Figure:
    """Held-out loss against rank under α/r (LoRA) and α/√r (rsLoRA) scaling."""
    rows = summarize(_task_runs(results, "scaling"))
    series = _required_lora_series(rows, "scaling")
    lora_rows = [r for c in series.values() for r in c]
    fig, axes = _figure("Scaling the adapter: α/r (LoRA) vs α/√r (rsLoRA)",
                        f"{_seed_note(lora_rows)} With α/r the update shrinks as r grows, so large ranks can learn "
                        "slower; rsLoRA's α/√r (Kalajdzievski, 2023) keeps it stable. A flatter curve means the "
                        "rank can be raised without re-tuning the learning rate.")
    ax = axes[0, 0]
    for variant, curve in sorted(series.items()):
        _errorbar(ax, curve, label=_variant_label(variant), linestyle="-" if not variant[2] else "--")
    _reference_lines(ax, _full_row(rows, "scaling"), _base_loss(_task_runs(results, "scaling")))
    _log2_rank_axis(ax, [r["rank"] for r in lora_rows])
    ax.set_ylabel(LOSS_LABEL)
    ax.legend(fontsize=7)
    return fig


FIGURES = {
    "domain_metric_vs_rank": figure_domain_metric_vs_rank,
    "parameters_vs_rank": figure_parameters_vs_rank,
    "delta_spectrum": figure_delta_spectrum,
    "subspace_similarity": figure_subspace_similarity,
    "planted_knee": figure_planted_knee,
    "budget": figure_budget,
    "scaling": figure_scaling,
}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def plot_all(directory, formats=("png", "svg"), log=_stderr) -> list[str]:
    """Draw every figure whose data is in ``DIR/results.jsonl`` into ``DIR/figures/``.

    Writes ``NAME.png`` (150 dpi) and ``NAME.svg`` for each NAME in ``FIGURES`` and returns the
    written paths. A figure without its data is skipped and ``log`` gets one line saying why.
    Raises FileNotFoundError / ValueError when the folder has no usable results (``load_results``).
    """
    formats = tuple(formats)
    if not formats or any(f not in ("png", "svg") for f in formats):
        raise ValueError(f"formats must be a non-empty subset of ('png', 'svg'), got {formats!r}")
    results = load_results(directory)
    out = os.path.join(os.fspath(directory), FIGURES_DIR)
    os.makedirs(out, exist_ok=True)
    written = []
    for name, make in FIGURES.items():
        try:
            fig = make(results)
        except MissingData as err:
            log(f"skipped figure {name}: {err}")
            continue
        written += _save(fig, os.path.join(out, name), formats)
    return written


def _save(fig: Figure, stem: str, formats: tuple) -> list[str]:
    paths = []
    # a fixed hash salt and no date keep SVG files identical from one run to the next
    with rc_context({"svg.hashsalt": "tinylora"}):
        for fmt in formats:
            path = f"{stem}.{fmt}"
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
            with atomic_writer(path) as f:
                f.write(buffer.getvalue())
            paths.append(path)
    return paths
