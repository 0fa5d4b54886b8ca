"""Figures, summary and report built from a small made-up results.jsonl."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tinylora.experiments import drawing, figures, plots, report, results, summary
from tinylora.experiments.analysis import random_baseline_spectrum
from tinylora.experiments.figures import plot_all
from tinylora.experiments.report import report_markdown
from tinylora.experiments.results import load_results
from tinylora.experiments.summary import summarize, write_summary_csv

RANKS = (1, 2, 4, 8, 16, 32)
SEEDS = (0, 1)
K_STAR = 4
D_IN = 48                                  # input size of the adapted layers
LAYERS = ("blocks.1.attn.q_proj", "blocks.1.attn.v_proj")
# made-up curves a reader can check: the planted error drops at r = k* = 4; the domain loss
# falls from the base model's 2.0 towards full fine-tuning's 1.0
PLANTED_ERROR = {1: 0.75, 2: 0.50, 4: 0.040, 8: 0.035, 16: 0.033, 32: 0.032, None: 0.030}
DOMAIN_LOSS = {1: 1.60, 2: 1.40, 4: 1.20, 8: 1.08, 16: 1.05, 32: 1.04, None: 1.00}
TOTAL_PARAMS = 100_000
ALL_FIGURES = ("domain_metric_vs_rank", "parameters_vs_rank", "delta_spectrum", "subspace_similarity",
               "planted_knee", "learning_vs_forgetting", "seed_similarity")  # two seeds: Fig. 4 too


def _adapter_A(rank: int, seed: int) -> dict:
    """A (rank, D_IN) per layer whose top rows share directions across ranks, as in the LoRA paper."""
    shared = np.random.default_rng(100 + seed).standard_normal((32, D_IN))
    noise = np.random.default_rng(rank).standard_normal((rank, D_IN))
    return {n: (shared[:rank] * np.linspace(3, 1, rank)[:, None] + noise).round(4).tolist() for n in LAYERS}


def _analysis(method: str, rank, seed: int) -> dict:
    if method == "full":
        spectrum = [10.0, 5.0, 1.0] + [0.1] * 13                 # close to rank 3
        norm = float(np.linalg.norm(spectrum))
        return {"delta_spectra": {n: spectrum for n in LAYERS},
                "random_spectra": {n: random_baseline_spectrum((16, 16), norm, seed=i).tolist()
                                   for i, n in enumerate(LAYERS)}}
    return {"adapter_A": _adapter_A(rank, seed),
            "amplification": {n: {"factor": 5.0, "random_factor": 1.0, "delta_norm": 1.0,
                                  "projected_norm": 0.2} for n in LAYERS}}


def fabricate_run(task: str, method: str, rank=None, seed: int = 0, targets=("q_proj", "v_proj"),
                  rslora: bool = False, analysis: bool = True) -> dict:
    """One plausible results.jsonl record (the sweep's schema), with a small seed-to-seed spread."""
    jitter = 0.001 * seed if task == "planted" else 0.01 * seed
    trainable = TOTAL_PARAMS if method == "full" else 2 * rank * (D_IN + D_IN) * len(targets)
    if task == "planted":
        metrics = {"rel_error": PLANTED_ERROR[rank] + jitter, "weight_error": 2 * PLANTED_ERROR[rank],
                   "val_loss": None, "base_val_loss": None, "accuracy": None}
    else:
        metrics = {"val_loss": DOMAIN_LOSS[rank] + jitter, "base_val_loss": 2.0,
                   "accuracy": 0.9 - 0.1 * DOMAIN_LOSS[rank],  # forgetting grows with what was learned
                   "forget_loss": 0.5 + 0.1 * (2.0 - DOMAIN_LOSS[rank]), "base_forget_loss": 0.5}
    return {
        "run_id": f"{task}-{method}-r{rank}-s{seed}", "sweep_id": "test", "task": task, "method": method,
        "rank": rank, "targets": list(targets), "alpha": 16.0, "rslora": rslora, "seed": seed, "steps": 10,
        "lr": 1e-3, "metrics": metrics, "curve": {"step": [0, 10], "train_loss": [3.0, 2.0]},
        "trainable_params": trainable, "total_params": TOTAL_PARAMS + (0 if method == "full" else trainable),
        "trainable_fraction": trainable / (TOTAL_PARAMS + (0 if method == "full" else trainable)),
        "adapter_bytes": None if method == "full" else 4 * trainable + 200,
        "full_checkpoint_bytes": 4 * TOTAL_PARAMS, "seconds": 1.5, "versions": {},
        "planted": {"k_star": K_STAR, "layers": list(LAYERS)} if task == "planted" else None,
        "analysis": _analysis(method, rank, seed) if analysis else None,
    }


def fabricate_sweep(tasks=("planted", "domain"), analysis: bool = True) -> list[dict]:
    """Both methods, every rank, two seeds: 2 tasks × (6 ranks + full) × 2 seeds = 28 runs."""
    return [fabricate_run(task, method, rank, seed, analysis=analysis)
            for task in tasks for seed in SEEDS
            for method, rank in [("lora", r) for r in RANKS] + [("full", None)]]


def write_results(folder, runs, corrupt_line: bool = True):
    lines = [json.dumps(r) for r in runs]
    if corrupt_line:
        lines.insert(2, '{"task": "domain", "method": "lo')        # a run cut short by a crash
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A folder with the fabricated sweep and its figures drawn once for every test below."""
    folder = write_results(tmp_path_factory.mktemp("sweep"), fabricate_sweep())
    with pytest.warns(UserWarning, match=r"results.jsonl:3: skipped"):
        skipped = []
        paths = plot_all(folder, log=skipped.append)
    return folder, paths, skipped


# --------------------------------------------------------------------------- figures

def test_plot_all_writes_each_figure_as_png_and_svg(sweep_dir):
    folder, paths, _ = sweep_dir
    expected = {str(folder / "figures" / f"{name}.{ext}") for name in ALL_FIGURES for ext in ("png", "svg")}
    assert set(paths) == expected


def test_every_png_starts_with_the_png_signature(sweep_dir):
    _, paths, _ = sweep_dir
    for path in (p for p in paths if p.endswith(".png")):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", path


def test_every_svg_is_an_svg_document(sweep_dir):
    _, paths, _ = sweep_dir
    for path in (p for p in paths if p.endswith(".svg")):
        with open(path, encoding="utf-8") as f:
            assert "<svg" in f.read(), path


def test_figures_for_tasks_that_did_not_run_are_skipped_with_a_note(sweep_dir):
    _, _, skipped = sweep_dir
    assert any(line.startswith("skipped figure budget") for line in skipped)
    assert any(line.startswith("skipped figure scaling") for line in skipped)
    assert any(line.startswith("skipped figure real_metrics_vs_rank") for line in skipped)
    assert any(line.startswith("skipped figure merge_lab") for line in skipped)
    # the fabricated runs predate Table 7's and Fig. 8's analyses
    assert any(line.startswith("skipped figure table7_amplification") for line in skipped)
    assert any(line.startswith("skipped figure delta_weight_similarity") for line in skipped)
    assert len(skipped) == 6


def test_figures_whose_analysis_is_missing_are_skipped_not_crashed(tmp_path):
    write_results(tmp_path, fabricate_sweep(tasks=("domain",), analysis=False), corrupt_line=False)
    skipped = []
    paths = plot_all(tmp_path, formats=("png",), log=skipped.append)
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == ["domain_metric_vs_rank.png", "learning_vs_forgetting.png", "parameters_vs_rank.png"]
    assert any("delta_spectra" in line for line in skipped)
    assert any("adapter_A" in line for line in skipped)


def test_budget_and_scaling_figures_are_drawn_when_those_tasks_ran(tmp_path):
    runs = [fabricate_run("budget", "lora", r, seed=0, targets=t, analysis=False)
            for r, t in [(8, ("q_proj", "v_proj")), (4, ("q_proj", "k_proj", "v_proj", "o_proj"))]]
    runs += [fabricate_run("scaling", "lora", r, seed=0, rslora=rs, analysis=False)
             for r in (2, 8, 32) for rs in (False, True)]
    write_results(tmp_path, runs, corrupt_line=False)
    paths = plot_all(tmp_path, formats=("svg",), log=lambda _: None)
    names = {p.rsplit("/", 1)[-1] for p in paths}
    assert {"budget.svg", "scaling.svg"} <= names


def test_a_run_without_metrics_does_not_break_the_figures(tmp_path):
    runs = fabricate_sweep(tasks=("domain",), analysis=False)
    runs.append({"task": "domain", "method": "lora", "rank": 64, "seed": 0})     # an old, partial record
    write_results(tmp_path, runs, corrupt_line=False)
    assert plot_all(tmp_path, formats=("png",), log=lambda _: None)


def test_plot_all_rejects_an_unknown_format(sweep_dir):
    folder, _, _ = sweep_dir
    with pytest.raises(ValueError, match="formats"):
        plot_all(folder, formats=("gif",))


# --------------------------------------------------------------------------- reading results

def test_load_results_skips_a_corrupt_line_with_a_warning(tmp_path):
    write_results(tmp_path, fabricate_sweep(tasks=("domain",)))
    with pytest.warns(UserWarning, match=r"results.jsonl:3: skipped a line \(not valid JSON"):
        runs = load_results(tmp_path)
    assert len(runs) == 14                                           # (6 ranks + full) × 2 seeds


def test_a_directory_without_results_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.jsonl in .*tinylora sweep"):
        plot_all(tmp_path)
    with pytest.raises(FileNotFoundError, match="no results.jsonl"):
        report_markdown(tmp_path)


def test_a_results_file_with_no_usable_run_gives_a_clear_error(tmp_path):
    (tmp_path / "results.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="holds no finished runs"):
        load_results(tmp_path)


# --------------------------------------------------------------------------- summary and report

def test_summary_has_one_row_per_task_method_and_rank_with_seeds_pooled():
    rows = summarize(fabricate_sweep())
    assert len(rows) == 2 * (len(RANKS) + 1)
    r4 = next(r for r in rows if r["task"] == "domain" and r["rank"] == 4)
    assert r4["n_seeds"] == 2
    assert (r4["mean"], r4["min"], r4["max"]) == pytest.approx((1.205, 1.20, 1.21))   # seeds add 0 and 0.01
    assert r4["metric"] == "val_loss"
    planted_full = next(r for r in rows if r["task"] == "planted" and r["method"] == "full")
    assert planted_full["metric"] == "rel_error" and planted_full["mean"] == pytest.approx(0.0305)


def test_summary_csv_has_a_header_and_one_line_per_row(tmp_path):
    path = tmp_path / "summary.csv"
    write_summary_csv(fabricate_sweep(), path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 14
    assert [r["task"] for r in rows[:7]] == ["planted"] * 7                 # planted first, full last
    assert rows[6]["method"] == "full" and rows[6]["rank"] == ""
    assert rows[0]["rank"] == "1" and rows[0]["n_seeds"] == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]          # no temporary file left behind


@pytest.mark.filterwarnings("ignore:.*skipped a line")
def test_report_has_a_table_per_task(sweep_dir):
    report = report_markdown(sweep_dir[0])
    assert "## planted" in report and "## domain" in report
    assert report.count("| method | rank | targets | scaling | seeds |") == 2


@pytest.mark.filterwarnings("ignore:.*skipped a line")
def test_report_names_the_knee_of_the_planted_task(sweep_dir):
    # full fine-tuning's floor is 0.0305; r=4 (0.0405) is the first rank within 2 × 0.0305
    assert "knee at r=4 (k*=4)" in report_markdown(sweep_dir[0])


@pytest.mark.filterwarnings("ignore:.*skipped a line")
def test_report_says_how_much_of_full_fine_tuning_lora_recovers(sweep_dir):
    # r=8: (2.0 − 1.085) / (2.0 − 1.005) = 0.92, the first rank past 90 %
    assert "LoRA r=8 recovers 92% of full fine-tuning's improvement" in report_markdown(sweep_dir[0])


# --------------------------------------------------------------------------- the old import path

def test_plots_module_re_exports_every_name_from_the_module_that_defines_it():
    homes = (results, summary, report, figures, drawing)
    for name in set(plots.__all__) - {"TASK_ORDER"}:
        owners = [m for m in homes if hasattr(m, name)]
        assert owners and all(getattr(plots, name) is getattr(m, name) for m in owners), name
    assert plots.TASK_ORDER is results.TASKS
