"""The LoRA paper's analyses and the merge lab, as tables, figures and Markdown, from ``results.jsonl`` alone.

- Table 7 (Hu et al., 2021, Section 7.3): ‖UᵀWqVᵀ‖_F with U, V the top-r singular directions of ΔWq, of
  Wq and of a random matrix, with ‖Wq‖_F, ‖ΔWq‖_F and the amplification factor: ``table7_rows``,
  ``figure_table7``. The sweep stores them per LoRA run (``analysis.amplification_table``).
- Fig. 8: φ between ΔWq's top-i and Wq's top-j output directions: ``figure_delta_weight_similarity``.
- Fig. 4: φ between the A matrices of two seeds at the same rank: ``seed_similarity``,
  ``figure_seed_similarity``.
- The merge lab (``merge_lab``): held-out loss on both tasks of every combined adapter, and how much of
  each gives up on each task against that task's own adapter: ``merge_lab_rows``, ``figure_merge_lab``.

``paper_analyses_markdown`` and ``merge_lab_markdown`` write the generated parts of docs/results.md.

>>> run = {"task": "domain", "method": "lora", "rank": 4, "seed": 0, "analysis": {"table7": {
...     "blocks.3.attn.q_proj": {"rank": 4, "delta_directions": 0.5, "weight_directions": 9.0,
...     "random_directions": 0.1, "weight_norm": 12.0, "delta_norm": 2.0, "amplification": 4.0}}}}
>>> [(row["rank"], row["amplification"]) for row in table7_rows([run])]
[(4, 4.0)]
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .analysis import random_subspace_similarity, subspace_similarity_grid
from .drawing import LOSS_LABEL, _figure, _some_ticks
from .results import is_diverged, task_key
from .summary import MissingData, _fmt

__all__ = ["TABLE7_FIELDS", "table7_rows", "delta_weight_grids", "seed_similarity", "merge_lab_rows",
           "figure_table7", "figure_delta_weight_similarity", "figure_seed_similarity", "figure_merge_lab",
           "paper_analyses_markdown", "merge_lab_markdown", "PAPER_FIGURES"]

TABLE7_FIELDS = ("delta_directions", "weight_directions", "random_directions", "weight_norm", "delta_norm",
                 "amplification")
COLUMN_LABELS = {"delta_directions": "ΔWq's top-r", "weight_directions": "Wq's top-r",
                 "random_directions": "random"}


# ---- picking runs --------------------------------------------------------------------------------
def _lora_with(results: list[dict], key: str) -> list[dict]:
    """The finished LoRA runs whose ``analysis`` holds ``key``, of the first task (task order) with any."""
    runs = [r for r in results if r.get("method") == "lora" and not is_diverged(r)
            and isinstance(r.get("analysis"), dict) and r["analysis"].get(key)]
    if not runs:
        raise MissingData(f"no LoRA run with analysis[{key!r}]")
    task = min({r["task"] for r in runs}, key=task_key)
    return [r for r in runs if r["task"] == task]


def _layer(runs: list[dict], key: str, suffix: str) -> str:
    """The deepest recorded layer whose name ends in ``suffix`` (the paper studies the 48th layer's Wq)."""
    names = sorted({n for r in runs for n in r["analysis"][key] if n.endswith(suffix)})
    if not names:
        raise MissingData(f"no recorded layer ending in {suffix!r} in analysis[{key!r}]")
    return names[-1]


# ---- Table 7 -------------------------------------------------------------------------------------
def table7_rows(results: list[dict], suffix: str = "q_proj") -> list[dict]:
    """One dict per rank: the ``TABLE7_FIELDS`` averaged over seeds, with ``rank``, ``n_seeds``, ``layer``
    and ``task``; sorted by rank."""
    runs = _lora_with(results, "table7")
    layer = _layer(runs, "table7", suffix)
    by_rank = defaultdict(list)
    for run in runs:
        if layer in run["analysis"]["table7"]:
            by_rank[run["rank"]].append(run["analysis"]["table7"][layer])
    return [{"rank": rank, "layer": layer, "task": runs[0]["task"], "n_seeds": len(entries),
             **{f: float(np.mean([e[f] for e in entries])) for f in TABLE7_FIELDS}}
            for rank, entries in sorted(by_rank.items())]


def figure_table7(results: list[dict]):
    """Table 7 as bars: ‖UᵀWqVᵀ‖_F for ΔWq's, Wq's and random directions at each rank (log scale)."""
    rows = table7_rows(results)
    layer = rows[0]["layer"]
    caption = (f"{rows[0]['task']} task, {layer}, W = the frozen base weight, means over "
               f"{max(r['n_seeds'] for r in rows)} seed(s). Each bar is how much of W lies in an "
               "r-dimensional subspace: W's own top-r is the most possible, random directions the floor. "
               "ΔW's own directions sit far below W's top-r: ΔW amplifies directions W does not emphasise, "
               "by the factor "
               "‖ΔW‖_F / ‖UᵀWV‖_F written over each group (LoRA paper, Table 7).")
    fig, axes = _figure(f"Table 7: how much of Wq lies in ΔWq's top-r directions ({layer})", caption,
                        width=7.0, height=4.8)
    ax = axes[0, 0]
    x = np.arange(len(rows))
    for k, (field, label) in enumerate(COLUMN_LABELS.items()):
        values = [r[field] for r in rows]
        ax.bar(x + (k - 1) * 0.27, values, width=0.26, color=f"C{k}", label=f"‖UᵀWV‖_F, U, V = {label}")
    for i, r in enumerate(rows):
        ax.text(i, r["weight_directions"] * 1.25, f"factor {_fmt(r['amplification'], 3)}\n"
                f"‖ΔW‖_F = {_fmt(r['delta_norm'], 3)}", ha="center", va="bottom", fontsize=7)
    norm = rows[0]["weight_norm"]
    ax.axhline(norm, color="0.4", linestyle=":", label=f"‖W‖_F = {_fmt(norm, 3)}")
    ax.set_yscale("log")
    ax.set_ylim(top=rows[0]["weight_norm"] * 6)
    ax.set_xticks(x, labels=[f"r = {r['rank']}" for r in rows])
    ax.set_ylabel("‖UᵀWV‖_F (log scale)")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _phi_heatmap(fig, ax, grid: np.ndarray, xlabel: str, ylabel: str) -> None:
    """φ(i, j) (rows i, columns j, both from 1) on a fixed 0-1 colour scale."""
    image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest",
                      extent=(0.5, grid.shape[1] + 0.5, grid.shape[0] + 0.5, 0.5))
    ax.set_xticks(_some_ticks(grid.shape[1]))
    ax.set_yticks(_some_ticks(grid.shape[0]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=ax, label="φ")


# ---- Fig. 8: ΔW's directions against W's ------------------------------------------------------------
def delta_weight_grids(results: list[dict], suffix: str = "q_proj") -> tuple[str, str, dict]:
    """(task, layer, {rank: φ(ΔW, W, i, j) (r, d)}) from the lowest seed of each rank."""
    runs = _lora_with(results, "delta_weight_similarity")
    layer = _layer(runs, "delta_weight_similarity", suffix)
    first = {}
    for run in sorted(runs, key=lambda r: r.get("seed", 0)):
        if layer in run["analysis"]["delta_weight_similarity"]:
            first.setdefault(run["rank"], run)
    grids = {r: np.asarray(first[r]["analysis"]["delta_weight_similarity"][layer], dtype=float)
             for r in sorted(first)}
    return runs[0]["task"], layer, grids


def figure_delta_weight_similarity(results: list[dict], j_shown: int = 32):
    """φ(ΔWq, Wq, i, j) heatmaps for j ≤ ``j_shown``, one per rank, as in the LoRA paper's Fig. 8."""
    task, layer, grids = delta_weight_grids(results)
    ranks = sorted(grids)
    d = grids[ranks[0]].shape[1]
    grids = {r: g[:, :j_shown] for r, g in grids.items()}
    caption = (f"{task} task, {layer}. Cell (i, j) compares ΔW's top-i output directions with W's top-j "
               f"(j ≤ {j_shown} of {d}): 1 = contained, 0 = orthogonal; random subspaces of R^{d} give "
               f"max(i, j)/{d}. Dark cells at small j mean ΔW's top directions are not W's top directions.")
    fig, axes = _figure("Fig. 8: are ΔWq's top directions Wq's top directions?", caption, ncols=len(ranks),
                        width=max(6.4, 4.6 * len(ranks)), height=4.4)
    for col, r in enumerate(ranks):
        _phi_heatmap(fig, axes[0, col], grids[r], "j (top-j left singular vectors of W)",
                     f"i (top-i of ΔW, r = {r})")
    return fig


# ---- Fig. 4: two seeds at the same rank -----------------------------------------------------------
def seed_similarity(results: list[dict]) -> dict:
    """{"rank", "seeds", "task", "d", "grids": {layer: φ(A_seed_a, A_seed_b, i, j) (r, r)}} for the largest
    rank that has two seeds with recorded A matrices (the two lowest seeds); d = the layers' input size."""
    runs = _lora_with(results, "adapter_A")
    by_rank = defaultdict(dict)
    for run in runs:
        by_rank[run["rank"]].setdefault(run.get("seed", 0), run)
    ranks = [r for r in sorted(by_rank) if len(by_rank[r]) >= 2]
    if not ranks:
        raise MissingData("no rank with LoRA runs of two seeds")
    rank = ranks[-1]
    seeds = sorted(by_rank[rank])[:2]
    a, b = (by_rank[rank][s]["analysis"]["adapter_A"] for s in seeds)
    layers = sorted(set(a) & set(b))
    grids = {n: subspace_similarity_grid(np.asarray(a[n], dtype=float), np.asarray(b[n], dtype=float))
             for n in layers}
    return {"rank": rank, "seeds": seeds, "task": runs[0]["task"], "grids": grids, "d": len(a[layers[0]][0])}


def figure_seed_similarity(results: list[dict]):
    """φ between the A matrices of two seeds at the same rank, per recorded layer (LoRA paper, Fig. 4)."""
    found = seed_similarity(results)
    layers, rank = list(found["grids"]), found["rank"]
    chance = random_subspace_similarity(found["d"], rank, rank)
    caption = (f"{found['task']} task, rank {rank}, seeds {found['seeds'][0]} and {found['seeds'][1]}. "
               "Cell (i, j) compares the top-i directions of one seed's A with the top-j of the other's: "
               "a bright top-left corner means the seeds found the same strongest directions. Random "
               "subspaces of R^d give "
               f"max(i, j)/d, d = {found['d']} ({chance:.2f} at i = j = {rank}).")
    fig, axes = _figure(f"Fig. 4: do two seeds learn the same directions at r = {rank}?", caption,
                        ncols=len(layers), width=max(6.4, 4.6 * len(layers)), height=4.6)
    for col, layer in enumerate(layers):
        grid = found["grids"][layer]
        first, second = found["seeds"]
        _phi_heatmap(fig, axes[0, col], grid, f"j (seed {second})", f"i (seed {first})")
        axes[0, col].set_title(f"{layer}  [φ(1, 1) = {grid[0, 0]:.2f}]", fontsize=9)
    return fig


# ---- the merge lab -------------------------------------------------------------------------------
def _merge_lab_run(results: list[dict]) -> dict:
    runs = [r for r in results if r.get("task") == "merge-lab" and r.get("method") == "lora"
            and not is_diverged(r) and isinstance(r.get("merge_lab"), dict)]
    if not runs:
        raise MissingData("no LoRA run of the merge-lab task")
    return max(runs, key=lambda r: (r["rank"], -r.get("seed", 0)))


def merge_lab_rows(results: list[dict]) -> list[dict]:
    """One dict per model of the largest-rank merge-lab run: ``name``, ``kind`` (reference / single /
    merge / joint), ``loss`` on each corpus, and ``excess``: {corpus: loss − the loss of the corpus's own
    adapter}, what the model gives up on that task (0 = as good as its own adapter, < 0 = better).

    (A share of the gain kept, (base − loss) / (base − own), would be ill-conditioned here: the arithmetic
    adapter lowers its loss only a little, so small differences would read as huge percentages.)"""
    run = _merge_lab_run(results)
    lab = run["merge_lab"]
    corpora, losses = lab["corpora"], lab["losses"]
    joint = [r["merge_lab"]["losses"]["joint"] for r in results if r.get("task") == "merge-lab"
             and r.get("method") == "full" and not is_diverged(r) and isinstance(r.get("merge_lab"), dict)]
    models = dict(losses, **({"joint": joint[0]} if joint else {}))

    def excess(loss: dict) -> dict:
        return {c: loss[c] - losses[c][c] for c in corpora}

    def kind(name: str) -> str:
        return {"base": "reference", "joint": "joint"}.get(name, "single" if name in corpora else "merge")

    return [{"name": name, "kind": kind(name), "rank": run["rank"], "loss": dict(loss),
             "excess": excess(loss)} for name, loss in models.items()]


def figure_merge_lab(results: list[dict]):
    """Loss on task 1 against loss on task 2 for every combined adapter, beside the base, the single
    adapters and joint full fine-tuning; and how much each gives up on each task against its own adapter."""
    rows = merge_lab_rows(results)
    run = _merge_lab_run(results)
    c1, c2 = run["merge_lab"]["corpora"]
    weights, density = run["merge_lab"]["weights"], run["merge_lab"]["density"]
    caption = (f"Two rank-{run['rank']} adapters, one trained on {c1}, one on {c2}, combined by "
               f"add_weighted_adapter with weights {weights} (density {density} for TIES, DARE and pruning). "
               "Left: held-out loss on each task (lower left is better). Right: each model's loss minus the "
               "loss of the task's own adapter (0 = it keeps all that adapter learned; the base's bars: "
               "all of it lost).")
    fig, axes = _figure("The merge lab: what each combination type keeps of each task", caption, ncols=2,
                        width=12.0, height=6.0)
    ax = axes[0, 0]
    style = {"reference": ("s", "0.3"), "single": ("*", "C3"), "joint": ("D", "C2"), "merge": ("o", "C0")}
    for row in rows:
        marker, color = style[row["kind"]]
        ax.scatter(row["loss"][c1], row["loss"][c2], marker=marker, color=color,
                   s=60 if marker == "*" else 30)
        label = {"base": "base", "joint": "joint full FT"}.get(row["name"], row["name"])
        ax.annotate(label, (row["loss"][c1], row["loss"][c2]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel(f"{LOSS_LABEL}: {c1}")
    ax.set_ylabel(f"{LOSS_LABEL}: {c2}")
    ax = axes[0, 1]
    y = np.arange(len(rows))
    for k, corpus in enumerate((c1, c2)):
        ax.barh(y + (k - 0.5) * 0.4, [r["excess"][corpus] for r in rows], height=0.38, color=f"C{k}",
                label=f"{corpus}: loss − {corpus} adapter's loss")
    ax.set_yticks(y, labels=[r["name"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel("loss above the task's own adapter (nats per character)")
    ax.legend(fontsize=7)
    return fig


# ---- the generated parts of docs/results.md ------------------------------------------------------
def paper_analyses_markdown(results: list[dict]) -> str:
    """Table 7 as a Markdown table, the seed-similarity numbers and the settings, from the results alone."""
    rows = table7_rows(results)
    lines = [f"Layer `{rows[0]['layer']}` of the {rows[0]['task']} task's LoRA runs, W = the frozen base "
             f"weight; each number is the mean over {max(r['n_seeds'] for r in rows)} seed(s).", "",
             "| r | ‖UᵀWqVᵀ‖_F, ΔWq's top-r | Wq's top-r | random | ‖Wq‖_F | ‖ΔWq‖_F "
             "| amplification ‖ΔWq‖_F / ‖UᵀWqVᵀ‖_F |", "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['rank']} | " + " | ".join(_fmt(r[f], 3) for f in TABLE7_FIELDS) + " |" for r in rows]
    lines.append("")
    for r in rows:
        lines.append(f"- r = {r['rank']}: ΔWq's own directions hold {_fmt(r['delta_directions'], 3)} of Wq, "
                     f"{_fmt(r['weight_directions'] / r['delta_directions'], 3)}× less than "
                     f"Wq's top-{r['rank']} and {_fmt(r['delta_directions'] / r['random_directions'], 3)}× "
                     "the random directions; "
                     f"ΔWq amplifies them {_fmt(r['amplification'], 3)}×.")
    task, layer, grids = delta_weight_grids(results)
    for r, grid in grids.items():
        d = grid.shape[1]
        lines.append(f"- Fig. 8, r = {r}: φ between ΔWq's top-{r} and Wq's top-{r} output directions is "
                     f"{grid[r - 1, r - 1]:.2f} (random: {r}/{d} = "
                     f"{random_subspace_similarity(d, r, r):.2f}); "
                     f"ΔWq's top direction against Wq's top {r}: {grid[0, r - 1]:.2f}.")
    try:
        found = seed_similarity(results)
    except MissingData:
        return "\n".join(lines)
    rank, d, top = found["rank"], found["d"], min(4, found["rank"])
    for layer, grid in found["grids"].items():
        chance = [random_subspace_similarity(d, k, k) for k in (1, top, rank)]
        lines.append(f"- Fig. 4, `{layer}`, r = {rank}, seeds {found['seeds'][0]} and {found['seeds'][1]}: "
                     f"φ(1, 1) = {grid[0, 0]:.2f}, φ({top}, {top}) = {grid[top - 1, top - 1]:.2f}, "
                     f"φ({rank}, {rank}) = {grid[-1, -1]:.2f} (random: {chance[0]:.3f}, {chance[1]:.3f}, "
                     f"{chance[2]:.3f}).")
    return "\n".join(lines)


def merge_lab_markdown(results: list[dict]) -> str:
    """The merge lab's table: held-out loss on both tasks, and each loss minus the task's own adapter's."""
    rows = merge_lab_rows(results)
    run = _merge_lab_run(results)
    c1, c2 = run["merge_lab"]["corpora"]
    lab = run["merge_lab"]
    lines = [f"Rank {run['rank']}, weights {lab['weights']}, density {lab['density']} for the types that "
             "prune; held-out loss in nats per character.", "",
             f"| model | loss on {c1} | loss on {c2} | {c1}: above its adapter | {c2}: above its adapter |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        names = {"base": "frozen base", "joint": "joint full fine-tuning (both corpora)"}
        name = names.get(r["name"], r["name"])
        name = f"{name} adapter alone" if r["kind"] == "single" else name
        lines.append(f"| {name} | {r['loss'][c1]:.4f} | {r['loss'][c2]:.4f} | "
                     f"{r['excess'][c1]:+.4f} | {r['excess'][c2]:+.4f} |")
    return "\n".join(lines)


PAPER_FIGURES = {"table7_amplification": figure_table7,
                 "delta_weight_similarity": figure_delta_weight_similarity,
                 "seed_similarity": figure_seed_similarity, "merge_lab": figure_merge_lab}
