"""The figures of a sweep, each drawn from the results alone, and ``plot_all`` to write them to files.

Anyone holding a results file can regenerate every figure: nothing here reads a model or a
checkpoint. Each figure is drawn only when its data is present; a missing field (an older or
partial run) raises ``MissingData``, and ``plot_all`` skips that figure with a note. Diverged
runs are not drawn; the captions name them, and ``plot_all`` says how many there are.
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from .._validate import check_choice
from .analysis import cumulative_energy, effective_rank, energy_rank, subspace_similarity_grid
from .drawing import (
    LOSS_LABEL,
    _errorbar,
    _figure,
    _log2_rank_axis,
    _reference_lines,
    _save,
    _seed_note,
    _some_ticks,
)
from .folder import check_writable_folder
from .forgetting import FORGETTING_FIGURES
from .paper_figures import PAPER_FIGURES
from .results import FIGURES_DIR, TASKS, is_diverged, load_results
from .summary import (
    MissingData,
    _base_loss,
    _first,
    _fmt_int,
    _fmt_pct,
    _full_row,
    _k_star,
    _lora_series,
    _main_variant,
    _metric,
    _number,
    _rank,
    _required_lora_series,
    _task_runs,
    _variant,
    _variant_label,
    summarize,
)

__all__ = ["FIGURES", "plot_all", "figure_domain_metric_vs_rank", "figure_parameters_vs_rank",
           "figure_delta_spectrum", "figure_subspace_similarity", "figure_planted_knee", "figure_budget",
           "figure_scaling"]

# A figure that shows one task prefers the domain task (real text), then the others in TASKS order.
PREFERRED_TASKS = ("domain",) + tuple(t for t in TASKS if t != "domain")


def _preferred_task(runs: list[dict]) -> str | None:
    tasks = {r.get("task") for r in runs}
    return next((t for t in PREFERRED_TASKS if t in tasks), min(tasks) if tasks else None)


def figure_domain_metric_vs_rank(results: list[dict]) -> Figure:
    """Held-out loss (and accuracy, if the task has one) of the domain task against LoRA rank."""
    rows = summarize(_task_runs(results, "domain"))
    series = _required_lora_series(rows, "domain")
    full, base = _full_row(rows, "domain"), _base_loss(_task_runs(results, "domain"))
    lora_rows = [r for c in series.values() for r in c]
    has_accuracy = any(r["accuracy"] is not None for r in lora_rows)
    seeds = _seed_note(lora_rows, rows)
    caption = (f"{seeds} Lower is better. Dashed: full fine-tuning (every weight trained); "
               "dotted: the frozen base model before fine-tuning. The gap between them is what LoRA can "
               "recover.")
    fig, axes = _figure("Domain adaptation: held-out loss vs LoRA rank", caption,
                        ncols=2 if has_accuracy else 1, width=10 if has_accuracy else 6.4)
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
    lora = [r for r in results
            if r.get("method") == "lora" and _number(r.get("trainable_params")) is not None]
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
    caption = ("Trainable parameters grow linearly with r: each adapted (out × in) layer adds r·(in + out). "
               "Labels give the trainable share of all parameters. Dashed: full fine-tuning, which trains "
               "and saves every weight.")
    fig, axes = _figure(f"What LoRA trains and stores, by rank ({task} task)", caption,
                        ncols=2 if has_bytes else 1, width=10 if has_bytes else 6.4)
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
    caption = (f"{run['task']} task, seed {run.get('seed', '?')}. Top: singular values divided by the "
               "largest (log scale). Bottom: share of ‖ΔW‖²_F held by the top k directions. Dashed: a "
               "Gaussian matrix with ΔW's shape and norm (no low-rank structure). A curve that falls faster "
               "than the dashed one, and a small effective rank, mean a few directions carry the update: "
               "LoRA's premise.")
    fig, axes = _figure("Is full fine-tuning's update low rank? Spectrum of ΔW = W_ft − W0", caption,
                        ncols=len(layers), nrows=2, width=max(6.4, 3.4 * len(layers)), height=6.4)
    for col, layer in enumerate(layers):
        _spectrum_panels(axes[0, col], axes[1, col], layer, np.asarray(spectra[layer], dtype=float),
                         np.asarray(randoms[layer], dtype=float) if layer in randoms else None)
    return fig


def _spectrum_panels(ax_s, ax_e, layer: str, s: np.ndarray, random: np.ndarray | None) -> None:
    curves = [("ΔW", s, "-")]
    if random is not None and random.sum() > 0:
        curves.append(("random", random, "--"))
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
    title = (f"Do rank-{rs} and rank-{rl} adapters learn the same directions? "
             f"φ(A_r={rs}, A_r={rl}, i, j)  [random subspaces: max(i, j)/d, d={d}]")
    caption = (f"{small['task']} task, seed {small.get('seed', '?')}. Cell (i, j) compares the top-i "
               f"directions of the rank-{rs} A with the top-j of the rank-{rl} A: 1 = one subspace "
               "contains the other, 0 = orthogonal. Random subspaces give max(i, j)/d, at most "
               f"{rl / d:.2f} here. A bright first column means the top direction is shared.")
    fig, axes = _figure(title, caption, ncols=len(layers), width=max(6.4, 5.2 * len(layers)), height=4.8)
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


def figure_planted_knee(results: list[dict]) -> Figure:
    """Relative error of the planted task against LoRA rank, with the planted rank k* marked."""
    rows = summarize(_task_runs(results, "planted"))
    series = _required_lora_series(rows, "planted")
    full, k_star = _full_row(rows, "planted"), _k_star(_task_runs(results, "planted"))
    lora_rows = [r for c in series.values() for r in c]
    seeds = _seed_note(lora_rows, rows)
    caption = (f"A rank-k* change ΔW* was planted in the target layers. {seeds} Relative "
               "error 1 = no better than the un-adapted model, 0 = perfect. The error should fall steeply "
               "until r reaches k* and then flatten near full fine-tuning's error (dashed: a reference for "
               "this budget, not a floor).")
    fig, axes = _figure("Recovering a planted rank-k* update: error vs LoRA rank", caption)
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
        same_curve = run.get("method") == "lora" and _rank(run) is not None and _variant(run) == variant
        if same_curve and value is not None:
            by_rank[_rank(run)].append(value)
    if by_rank:
        ranks = sorted(by_rank)
        ax.plot(ranks, [np.mean(by_rank[r]) for r in ranks], marker="^", linestyle="--", color="C1",
                label="‖ΔW − ΔW*‖_F / ‖ΔW*‖_F (weight error)")


def figure_budget(results: list[dict]) -> Figure:
    """Held-out loss of each targets/rank combination of the budget task, as horizontal bars."""
    all_rows = summarize(_task_runs(results, "budget"))
    rows = [r for r in all_rows if r["method"] == "lora" and r["mean"] is not None]
    if not rows:
        raise MissingData("no LoRA runs of the budget task with a val_loss")
    rows = sorted(rows, key=lambda r: (r["trainable_params"] or 0, r["targets"], r["rank"] or 0))
    labels = [f"{r['targets']}  r={r['rank']}  ({_fmt_int(r['trainable_params'])} params)" for r in rows]
    means = np.array([r["mean"] for r in rows])
    spread = np.array([[r["mean"] - r["min"], r["max"] - r["mean"]] for r in rows]).T
    seeds = _seed_note(rows, all_rows)
    caption = (f"Each bar is one choice of adapted layers and rank (budget task). {seeds} "
               "Shorter bars are better. Dashed: full fine-tuning; dotted: the frozen base model.")
    fig, axes = _figure("Where to spend a parameter budget: which layers, what rank?", caption, width=8.0,
                        height=max(3.6, 1.6 + 0.38 * len(rows)))
    ax = axes[0, 0]
    ax.barh(np.arange(len(rows)), means, xerr=spread if any(r["n_seeds"] > 1 for r in rows) else None,
            color="C0", capsize=3)
    ax.set_yticks(np.arange(len(rows)), labels=labels, fontsize=8)
    ax.invert_yaxis()
    _reference_lines(ax, _full_row(all_rows, "budget"), _base_loss(_task_runs(results, "budget")),
                     vertical=True)
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
    seeds = _seed_note(lora_rows, rows)
    caption = (f"{seeds} With α/r the update shrinks as r grows, so large ranks can learn "
               "slower; rsLoRA's α/√r (Kalajdzievski, 2023) keeps it stable. A flatter curve means the "
               "rank can be raised without re-tuning the learning rate.")
    fig, axes = _figure("Scaling the adapter: α/r (LoRA) vs α/√r (rsLoRA)", caption)
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
    **FORGETTING_FIGURES,  # learning against forgetting; a real model's metrics against rank
    **PAPER_FIGURES,  # LoRA paper Table 7, Fig. 8 and Fig. 4 (two seeds); the merge lab
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
    if not formats:
        raise ValueError("formats must name at least one of 'png' and 'svg', got ()")
    for fmt in formats:
        check_choice("formats", fmt, ("png", "svg"), where="plot_all")
    results = load_results(directory)
    out = check_writable_folder(os.path.join(os.fspath(directory), FIGURES_DIR), "the figures folder")
    diverged = sum(map(is_diverged, results))
    if diverged:
        log(f"{diverged} of {len(results)} runs diverged: not drawn, named in the captions "
            "(`tinylora report` gives their messages)")
    written = []
    for name, make in FIGURES.items():
        try:
            fig = make(results)
        except MissingData as err:
            log(f"skipped figure {name}: {err}")
            continue
        written += _save(fig, os.path.join(out, name), formats)
    return written

