"""Learning against forgetting, from a sweep's ``results.jsonl``: a table, two figures, a Markdown report.

Every domain-like run records two held-out losses before and after fine-tuning: on the new task
(``base_val_loss`` -> ``val_loss``) and on text the base already handled well (``base_forget_loss``
-> ``forget_loss``: the toy base's fables, or SmolLM2's own answers to varied chat prompts). So

- **learning** = ``base_val_loss - val_loss`` (how much the task loss fell; higher is better),
- **forgetting** = ``forget_loss - base_forget_loss`` (how much the old text's loss rose; lower is better),

and plotting one against the other for every rank and for full fine-tuning is the figure of
Biderman et al. (2024, "LoRA Learns Less and Forgets Less", arXiv:2405.09673).

>>> runs = [{"task": "cards", "method": m, "rank": r, "targets": ["q_proj", "v_proj"], "seed": 0,
...          "metrics": {"val_loss": v, "base_val_loss": 2.0, "forget_loss": f, "base_forget_loss": 0.5}}
...         for m, r, v, f in [("lora", 4, 1.0, 0.6), ("full", None, 0.5, 0.9)]]
>>> [(p["label"], p["learning"], round(p["forgetting"], 6)) for p in learning_forgetting_points(runs)]
[('LoRA r=4', 1.0, 0.1), ('full: q_proj+v_proj', 1.5, 0.4)]
>>> round(recovered_share(learning_forgetting_points(runs))["LoRA r=4"]["full: q_proj+v_proj"], 4)
0.6667
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .base_answers import load_base_answers
from .drawing import _figure, _log2_rank_axis
from .llm_task import LLM_TASKS
from .results import is_diverged
from .summary import MissingData, _fmt, _number

__all__ = ["learning_forgetting_points", "recovered_share", "forgetting_task", "forgetting_markdown",
           "figure_learning_vs_forgetting", "figure_real_metrics_vs_rank", "FORGETTING_FIGURES"]

_KEYS = ("val_loss", "base_val_loss", "forget_loss", "base_forget_loss", "accuracy", "base_accuracy",
         "format_rate", "base_format_rate")


def forgetting_task(results: list[dict]) -> str | None:
    """The task to show: a real-model task when the results have one, else the toy domain task."""
    have = {r.get("task") for r in results if _has_forgetting(r)}
    return next((t for t in LLM_TASKS + ("domain",) if t in have), None)


def _has_forgetting(run: dict) -> bool:
    metrics = run.get("metrics")
    return (not is_diverged(run) and isinstance(metrics, dict)
            and all(_number(metrics.get(k)) is not None
                    for k in ("val_loss", "base_val_loss", "forget_loss", "base_forget_loss")))


def _label(run: dict) -> str:
    if run.get("method") == "lora":
        return f"LoRA r={run.get('rank')}{' (rsLoRA)' if run.get('rslora') else ''}"
    targets = run.get("targets") or []
    if run.get("task") in LLM_TASKS:  # full fine-tuning of the named layers only
        return f"full: {'+'.join(targets)}"
    return "full: all weights"


def learning_forgetting_points(results: list[dict], task: str | None = None) -> list[dict]:
    """One dict per configuration of ``task`` (default ``forgetting_task``), seeds averaged: ``label``,
    ``method``, ``rank``, ``n_seeds``, ``learning``, ``forgetting``, every metric of ``_KEYS`` and
    ``trainable_params``. LoRA rows come first, by rank, then full fine-tuning."""
    task = task or forgetting_task(results)
    groups = defaultdict(list)
    for run in results:
        if run.get("task") == task and _has_forgetting(run):
            groups[_label(run)].append(run)
    points = []
    for label, runs in groups.items():
        mean = {k: _mean([_number(r["metrics"].get(k)) for r in runs]) for k in _KEYS}
        points.append({"label": label, "task": task, "method": runs[0]["method"], "rank": runs[0].get("rank"),
                       "targets": runs[0].get("targets"), "n_seeds": len(runs),
                       "trainable_params": runs[0].get("trainable_params"),
                       "learning": mean["base_val_loss"] - mean["val_loss"],
                       "forgetting": mean["forget_loss"] - mean["base_forget_loss"], **mean})
    return sorted(points, key=lambda p: (p["method"] != "lora", p["rank"] or 0, p["label"]))


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None  # host-ok


def recovered_share(points: list[dict]) -> dict:
    """{LoRA label: {full label: LoRA's learning / that full run's learning}}: the share of full
    fine-tuning's gain in held-out task loss that each rank recovers."""
    full = [p for p in points if p["method"] == "full" and p["learning"] > 0]
    return {p["label"]: {f["label"]: p["learning"] / f["learning"] for f in full}
            for p in points if p["method"] == "lora"}


def forgetting_markdown(results: list[dict], task: str | None = None) -> str:
    """A Markdown table: per configuration, held-out task loss, exact-answer rate, forgetting loss, learning,
    forgetting and the share of each full run's gain (a real-model task also shows the base row)."""
    points = learning_forgetting_points(results, task)
    if not points:
        raise MissingData("no run records val_loss, base_val_loss, forget_loss and base_forget_loss")
    shares = recovered_share(points)
    fulls = [p["label"] for p in points if p["method"] == "full" and p["learning"] > 0]
    head = ["run", "trainable params", "held-out loss", "exact answers", "forgetting loss", "learning",
            "forgetting"] + [f"share of {f}" for f in fulls]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    first = points[0]
    lines.append("| base (no fine-tuning) | 0 | " + " | ".join(
        [_fmt(first["base_val_loss"]), _pct(first["base_accuracy"]), _fmt(first["base_forget_loss"]), "0",
         "0"] + ["–"] * len(fulls)) + " |")
    for p in points:
        share = [_pct(shares[p["label"]][f]) if p["method"] == "lora" else "–" for f in fulls]
        params = "–" if p["trainable_params"] is None else f"{p['trainable_params']:,}"
        lines.append(f"| {p['label']} | {params} | " + " | ".join(
            [_fmt(p["val_loss"]), _pct(p["accuracy"]), _fmt(p["forget_loss"]), _fmt(p["learning"]),
             _fmt(p["forgetting"], 3)] + share) + " |")
    return "\n".join(lines)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


# ---- figures ---------------------------------------------------------------------------------------
def _required_points(results: list[dict]) -> list[dict]:
    points = learning_forgetting_points(results)
    if not points:
        raise MissingData("no run records val_loss, base_val_loss, forget_loss and base_forget_loss")
    return points


def _what_is_forgotten(task: str) -> str:
    return ("the base's own greedy answers to varied chat prompts" if task in LLM_TASKS
            else "held-out fables (the base's pre-training text)")


def figure_learning_vs_forgetting(results: list[dict]):
    """Learning (fall in held-out task loss) against forgetting (rise in loss on what the base did well)."""
    points = _required_points(results)
    task = points[0]["task"]
    caption = (f"{task} task. Each point is one run: x, how much the loss on {_what_is_forgotten(task)} rose "
               "(forgetting; left is better); y, how much the held-out task loss fell (learning; up is "
               "better). LoRA ranks are joined in order of rank; squares are full fine-tuning. After "
               "Biderman et al. (2024), arXiv:2405.09673.")
    fig, axes = _figure(f"Learning against forgetting ({task} task)", caption, width=7.0, height=5.2)
    ax = axes[0, 0]
    lora = [p for p in points if p["method"] == "lora"]
    if lora:
        ax.plot([p["forgetting"] for p in lora], [p["learning"] for p in lora], "-o", color="C0",
                label="LoRA")
        for i, p in enumerate(lora):  # labels alternate below and above, so neighbours do not overlap
            ax.annotate(f"r={p['rank']}", (p["forgetting"], p["learning"]), textcoords="offset points",
                        xytext=(5, -11 if i % 2 == 0 else 5), fontsize=7)
    for i, p in enumerate(q for q in points if q["method"] == "full"):
        ax.plot([p["forgetting"]], [p["learning"]], "s", color=f"C{3 + i}", markersize=8, label=p["label"])
    ax.axvline(0, color="0.6", linewidth=0.8)
    ax.set_xlabel("forgetting: rise in loss on what the base did well (nats per token)"
                  if task in LLM_TASKS else "forgetting: rise in fables loss (nats per character)")
    ax.set_ylabel("learning: fall in held-out task loss")
    ax.legend(fontsize=7)
    return fig


def figure_real_metrics_vs_rank(results: list[dict]):
    """A real-model task against LoRA rank: held-out loss, exact-answer rate and forgetting loss, with
    full fine-tuning (dashed) and the base (dotted) alongside."""
    points = [p for p in _required_points(results) if p["task"] in LLM_TASKS]
    lora = [p for p in points if p["method"] == "lora"]
    if not lora:
        raise MissingData("no LoRA run of a real-model task")
    task = lora[0]["task"]
    caption = (f"{task} task (SmolLM2-135M-Instruct), one point per rank. Dashed: full fine-tuning of the "
               "named layers; dotted: the base before fine-tuning. Exact answers: the share of held-out "
               "prompts whose expected card is the greedy reply.")
    fig, axes = _figure(f"{task}: held-out loss, exact answers and forgetting vs LoRA rank", caption, ncols=3,
                        width=13, height=4.6)
    panels = [("val_loss", "base_val_loss", "held-out task loss (nats per answer token)"),
              ("accuracy", "base_accuracy", "exact answers (fraction)"),
              ("forget_loss", "base_forget_loss", "loss on the base's own answers (nats per token)")]
    for ax, (key, base_key, label) in zip(axes[0], panels):
        ax.plot([p["rank"] for p in lora], [p[key] for p in lora], "-o", color="C0", label="LoRA")
        for i, p in enumerate(q for q in points if q["method"] == "full"):
            ax.axhline(p[key], color=f"C{3 + i}", linestyle="--",
                       label=f"{p['label']} ({_fmt(p[key], 3)})")
        base = lora[0][base_key]
        ax.axhline(base, color="0.4", linestyle=":", label=f"base ({_fmt(base, 3)})")
        _log2_rank_axis(ax, [p["rank"] for p in lora])
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    return fig


FORGETTING_FIGURES = {"learning_vs_forgetting": figure_learning_vs_forgetting,
                      "real_metrics_vs_rank": figure_real_metrics_vs_rank}


# ---- the real-model section of docs/results.md -------------------------------------------------
def real_sweep_markdown(results: list[dict], n_samples: int = 2) -> str:
    """The generated part of the real-model section of ``docs/results.md``: the runs' settings and
    times, the table of ``forgetting_markdown``, each rank's share of full fine-tuning's gain in
    words, and before/after samples (from the highest-rank LoRA run and full fine-tuning of every
    linear layer). ``tests/test_docs.py`` checks that the page holds exactly this text."""
    task = forgetting_task(results)
    runs = [r for r in results if r.get("task") == task and _has_forgetting(r)]
    if task not in LLM_TASKS or not runs:
        raise MissingData("no finished run of a real-model task")
    points = learning_forgetting_points(results, task)
    spec = runs[0].get("spec", {})
    seconds = [r["seconds"] for r in runs]
    lines = [f"{len(runs)} runs of the {task} task on {runs[0].get('model')}: {spec.get('steps')} steps "
             f"of {spec.get('batch_size')} examples each ({spec.get('n_train')} training prompts), LoRA at "
             f"lr {_lr(runs, 'lora')} with α = {spec.get('alpha'):g}, full fine-tuning at lr "
             f"{_lr(runs, 'full')}; "
             f"{spec.get('n_eval')} held-out prompts, {_n_forget(runs)} base answers. One run took "
             f"{min(seconds):.0f}–{max(seconds):.0f} s (all {sum(seconds):.0f} s together).", "",
             forgetting_markdown(results, task), ""]
    for label, shares in recovered_share(points).items():
        lines.append(f"- {label} recovers " + " and ".join(f"{100 * s:.0f}% of {full}'s gain"
                                                          for full, s in shares.items()) + ".")
    lines += ["", "Replies to held-out prompts (greedy):", ""]
    shown = [r for r in runs if r["method"] == "lora"]
    shown = [max(shown, key=lambda r: r["rank"])] if shown else []
    shown += [r for r in runs if r["method"] == "full" and r.get("targets") == ["all-linear"]]
    for sample_index in range(min(n_samples, len(runs[0].get("samples") or []))):
        sample = runs[0]["samples"][sample_index]
        lines += [f"- prompt: `{sample['prompt']}`", f"  - base: `{_one_line(sample['base_reply'])}`"]
        for run in shown:
            lines.append(f"  - {_label(run)}: `{_one_line(run['samples'][sample_index]['reply'])}`")
    return "\n".join(lines)


def _lr(runs, method) -> str:
    rates = sorted({r.get("lr") for r in runs if r.get("method") == method})
    return ", ".join(f"{x:g}" for x in rates) or "–"


def _n_forget(runs) -> str:
    n = runs[0].get("spec", {}).get("n_forget")
    return f"all {len(load_base_answers())}" if n is None else str(n)


def _one_line(text: str) -> str:
    return text.replace("\n", "⏎").replace("`", "'")
