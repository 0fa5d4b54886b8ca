"""The summary of a sweep: one row per configuration, seeds pooled, as a list of dicts or a CSV file.

A results line is read defensively: a missing or non-finite field (an older or partial run)
becomes None instead of an error. A diverged run (``results.is_diverged``: recorded as
``"status": "diverged"``, or an older line whose metrics are NaN, inf or exploded) is no result:
it counts in its row's ``n_diverged``, never in ``n_seeds`` or the mean. The helpers that pick
rows for one task (``_lora_series``, ``_full_row``, ...) are shared by the report and the figures.

>>> runs = [{"task": "domain", "method": "lora", "rank": 4, "seed": s, "metrics": {"val_loss": v}}
...         for s, v in [(0, 1.5), (1, 1.7)]]
>>> [(row["rank"], row["n_seeds"], round(row["mean"], 6)) for row in summarize(runs)]
[(4, 2, 1.6)]
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict

import numpy as np

from .._validate import is_int, is_real
from ..io import atomic_writer
from .results import is_diverged, naming, task_key

__all__ = ["SUMMARY_COLUMNS", "MissingData", "main_metric", "summarize", "write_summary_csv", "diverged_rows"]

SUMMARY_COLUMNS = ("task", "method", "rank", "targets", "alpha", "rslora", "n_seeds", "n_diverged", "metric",
                   "mean", "min", "max", "accuracy", "forget_loss", "trainable_params", "trainable_pct",
                   "adapter_bytes", "seconds")


class MissingData(Exception):
    """A figure or sentence cannot be made because the results lack the data it needs."""


# --------------------------------------------------------------------------- one run's fields

def main_metric(task: str) -> str:
    """The number each task is judged by: ``rel_error`` for planted, ``val_loss`` otherwise."""
    return "rel_error" if task == "planted" else "val_loss"


def _number(x) -> float | None:
    """``x`` as a float when it is a finite number (not a bool), else None."""
    return float(x) if is_real(x) and math.isfinite(x) else None


def _metric(run: dict, name: str) -> float | None:
    metrics = run.get("metrics")
    return _number(metrics.get(name)) if isinstance(metrics, dict) else None


def _targets(run: dict) -> str:
    targets = run.get("targets")
    if run.get("method") == "full" and run.get("model") and isinstance(targets, list):
        return "+".join(targets) + ", full rank"  # a real model's full runs train only these layers
    if run.get("method") == "full":
        return "planted layers, full rank" if run.get("task") == "planted" else "all weights"
    if isinstance(targets, str):
        return targets
    return "+".join(targets) if isinstance(targets, list) and targets else "?"


def _rank(run: dict) -> int | None:
    rank = run.get("rank")
    return int(rank) if is_int(rank) and run.get("method") == "lora" else None


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

def _row_key(row: dict) -> tuple:
    full = row["method"] == "full"
    return (task_key(row["task"]), full, row["targets"], bool(row["rslora"]), row["alpha"] or 0.0,
            row["rank"] or 0)


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


def _summary_row(task: str, method: str, rank, variant: tuple, all_runs: list[dict]) -> dict:
    metric = main_metric(task)
    runs = [r for r in all_runs if not is_diverged(r)]
    values = [v for v in (_metric(r, metric) for r in runs) if v is not None]
    trainable = _first(runs, "trainable_params")
    adapter = _first(runs, "adapter_bytes")
    return {
        "task": task, "method": method, "rank": rank, "targets": variant[0], "alpha": variant[1],
        "rslora": variant[2], "n_seeds": len(values), "n_diverged": len(all_runs) - len(runs),
        "metric": metric,
        "mean": float(np.mean(values)) if values else None,
        "min": min(values) if values else None, "max": max(values) if values else None,
        "accuracy": _mean(_metric(r, "accuracy") for r in runs),
        "forget_loss": _mean(_metric(r, "forget_loss") for r in runs),   # the domain tasks: fables loss
        "trainable_params": int(trainable) if trainable is not None else None,
        "trainable_pct": _trainable_pct(runs),
        "adapter_bytes": int(adapter) if adapter is not None else None,
        "seconds": _mean(_number(r.get("seconds")) for r in runs),
    }


def summarize(results: list[dict]) -> list[dict]:
    """One row per (task, method, rank, targets, alpha, rslora), seeds pooled.

    Each row holds ``n_seeds`` (runs that have the metric), ``n_diverged`` (runs that diverged,
    left out of everything else), the task's main metric (see
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
    with naming(path), atomic_writer(path, "w") as f:
        f.write(buffer.getvalue())


# --------------------------------------------------------------------------- series for one task

def _task_runs(results, task: str) -> list[dict]:
    return [r for r in results if r.get("task") == task]


def _lora_series(rows: list[dict], task: str) -> dict:
    """variant -> rows of LoRA runs with a metric, sorted by rank."""
    series = defaultdict(list)
    for row in rows:
        lora = row["task"] == task and row["method"] == "lora"
        if lora and row["rank"] is not None and row["mean"] is not None:
            series[(row["targets"], row["alpha"], row["rslora"])].append(row)
    return {v: sorted(rs, key=lambda r: r["rank"]) for v, rs in series.items()}


def _required_lora_series(rows: list[dict], task: str) -> dict:
    """``_lora_series``, or MissingData naming the task and its metric when it has no LoRA run."""
    series = _lora_series(rows, task)
    if not series:
        diverged = sum(r["n_diverged"] for r in rows if r["task"] == task and r["method"] == "lora")
        why = f" ({diverged} diverged)" if diverged else ""
        raise MissingData(f"no LoRA runs of the {task} task with a {main_metric(task)}{why}")
    return series


def diverged_rows(rows: list[dict]) -> list[dict]:
    """The rows with at least one diverged run."""
    return [r for r in rows if r["n_diverged"]]


def _run_label(row: dict) -> str:
    return "full fine-tuning" if row["method"] == "full" else f"LoRA r={row['rank']}"


def _diverged_note(rows: list[dict]) -> str:
    """"Diverged, so not drawn: LoRA r=8 (1 run), full fine-tuning (2 runs)." or "" when none did."""
    parts = [f"{_run_label(r)} ({r['n_diverged']} run{'s' * (r['n_diverged'] != 1)})"
             for r in diverged_rows(rows)]
    return f"Diverged, so not drawn: {', '.join(parts)}." if parts else ""


def _main_variant(series: dict) -> tuple:
    """The LoRA variant with the most ranks (the sweep's default targets, usually)."""
    return max(sorted(series), key=lambda v: len(series[v]))


def _full_row(rows: list[dict], task: str) -> dict | None:
    full = (r for r in rows if r["task"] == task and r["method"] == "full" and r["mean"] is not None)
    return next(full, None)


def _base_loss(runs: list[dict]) -> float | None:
    return _mean(_metric(r, "base_val_loss") for r in runs)


def _k_star(runs: list[dict]) -> int | None:
    for run in runs:
        planted = run.get("planted")
        if isinstance(planted, dict) and is_int(planted.get("k_star")):
            return planted["k_star"]
    return None


# --------------------------------------------------------------------------- numbers in words

def _fmt(x, digits: int = 4) -> str:
    return "–" if x is None else f"{x:#.{digits}g}"


def _fmt_pct(pct: float) -> str:
    return f"{pct:.1f}%" if pct >= 1 else f"{pct:.2g}%"


def _fmt_int(x) -> str:
    return "–" if x is None else f"{x:,}"

