"""The Markdown report of a sweep: per task, one sentence saying what the runs show, then the table.

The sentences (``interpret_*``) read the ``summarize`` rows: where the planted task's error
has its knee, how much of full fine-tuning's improvement a LoRA rank recovers, which budget
choice won, how stable each scaling rule is across ranks. A task whose data is missing gets
"(no interpretation: ...)" instead of an error. Diverged runs are no result: the table shows them
as "diverged" (never as "0 seeds"), and each task lists them with their message.
"""
from __future__ import annotations

import os

import numpy as np

from .analysis import knee_rank, recovered_fraction
from .results import is_diverged, load_results, task_key
from .summary import (
    MissingData,
    _base_loss,
    _fmt,
    _fmt_int,
    _fmt_pct,
    _full_row,
    _k_star,
    _lora_series,
    _main_variant,
    _mean,
    _metric,
    _required_lora_series,
    _scale_label,
    _task_runs,
    summarize,
)

__all__ = ["KNEE_FACTOR", "RECOVERY_TARGET", "report_markdown", "interpret_planted", "interpret_loss_task",
           "interpret_budget", "interpret_scaling"]

KNEE_FACTOR = 5.0  # below the knee errors are 50-100x the floor; at and above it, 1-2x
RECOVERY_TARGET = 0.9


# --------------------------------------------------------------------------- the table

def _fmt_spread(row: dict) -> str:
    if row["mean"] is None:
        return "diverged" if row["n_diverged"] else "–"
    if row["n_seeds"] > 1:
        return f"{_fmt(row['mean'])} ({_fmt(row['min'])}–{_fmt(row['max'])})"
    return _fmt(row["mean"])


def _fmt_seeds(row: dict) -> str:
    return f"{row['n_seeds']} (+{row['n_diverged']} diverged)" if row["n_diverged"] else str(row["n_seeds"])


def _diverged_lines(runs: list[dict]) -> list[str]:
    """One bullet per diverged run: what it was and its message."""
    lines = []
    for run in runs:
        if is_diverged(run):
            what = "full fine-tuning" if run.get("method") == "full" else f"LoRA r={run.get('rank')}"
            message = run.get("message") or "its metrics are NaN, inf or exploded"
            lines.append(f"- diverged: {what}, seed {run.get('seed')}: {message}")
    return lines + [""] if lines else []


def _markdown_table(rows: list[dict]) -> list[str]:
    metric = rows[0]["metric"]
    forgetting = any(r.get("forget_loss") is not None for r in rows)   # a column only where it was measured
    lines = [f"| method | rank | targets | scaling | seeds | {metric} mean (min–max) | accuracy "
             + ("| fables loss (forgetting) " if forgetting else "")
             + "| trainable params | trainable % | adapter bytes | seconds |",
             "|---|---:|---|---|---:|---:|---:|" + ("---:|" if forgetting else "") + "---:|---:|---:|---:|"]
    for r in rows:
        pct = "–" if r["trainable_pct"] is None else f"{r['trainable_pct']:.3g}"
        lines.append(f"| {r['method']} | {r['rank'] if r['rank'] is not None else '–'} | {r['targets']} "
                     f"| {_scale_label(r['alpha'], r['rslora'])} "
                     f"| {_fmt_seeds(r)} | {_fmt_spread(r)} | {_fmt(r['accuracy'], 3)} "
                     + (f"| {_fmt(r.get('forget_loss'))} " if forgetting else "")
                     + f"| {_fmt_int(r['trainable_params'])} | {pct} | {_fmt_int(r['adapter_bytes'])} "
                     f"| {_fmt(r['seconds'], 3)} |")
    return lines


# --------------------------------------------------------------------------- the sentences

def interpret_planted(results: list[dict], rows: list[dict]) -> str:
    """"knee at r=4 (k*=4)": the first rank within ``KNEE_FACTOR`` times full fine-tuning's error."""
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
    share = row["trainable_pct"]
    pct = "" if share is None else f" with {_fmt_pct(share)} of parameters trainable"
    sentence = (f"LoRA r={row['rank']} recovers {100 * fraction:.0f}% of full fine-tuning's improvement{pct} "
                f"(held-out loss: base {_fmt(base)}, LoRA {_fmt(row['mean'])}, full {_fmt(full['mean'])}).")
    base_forget = _mean(_metric(r, "base_forget_loss") for r in _task_runs(results, task))
    if base_forget is None or row.get("forget_loss") is None or full.get("forget_loss") is None:
        return sentence
    return (sentence + f" Forgetting, the held-out fables loss: base {_fmt(base_forget)}, LoRA "
            f"{_fmt(row['forget_loss'])}, full {_fmt(full['forget_loss'])}.")


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
    tasks = sorted({r["task"] for r in rows}, key=task_key)
    diverged = sum(map(is_diverged, results))
    counted = f"{len(results)} runs, {diverged} of them diverged (not counted as results)." if diverged \
        else f"{len(results)} runs."
    lines = [f"# tinylora sweep: {os.fspath(directory)}", "", counted, ""]
    for task in tasks:
        task_rows = [r for r in rows if r["task"] == task]
        lines += [f"## {task}", "", _interpretation(results, rows, task), ""]
        lines += _diverged_lines([r for r in results if r.get("task") == task])
        lines += _markdown_table(task_rows) + [""]
    return "\n".join(lines)

