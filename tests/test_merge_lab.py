"""The merge lab: the sweep task on its smallest settings, the merges it measures, its table and figure."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tinylora.experiments.figures import plot_all
from tinylora.experiments.merge_lab import MERGE_TYPES, merge_losses
from tinylora.experiments.paper_figures import merge_lab_markdown, merge_lab_rows
from tinylora.experiments.results import read_results
from tinylora.experiments.sweep import SweepConfig
from tinylora.experiments.tasks import RunSpec, run
from tinylora.lora import LoraConfig, adapter_names, add_adapter, set_adapter
from tinylora.models import GPT, GPTConfig
from tinylora.train import estimate_loss

TINY = dict(task="merge-lab", steps=2, batch_size=2, block_size=16, lr=2e-2, init="kaiming")


def test_a_merge_lab_sweep_is_one_lora_run_per_rank_and_the_joint_full_reference():
    specs = SweepConfig(tasks=("merge-lab",), ranks=(2, 4)).runs()
    assert [(s.task, s.method, s.rank) for s in specs] == [
        ("merge-lab", "lora", 2), ("merge-lab", "lora", 4), ("merge-lab", "full", None)]


@pytest.mark.slow
def test_the_smallest_merge_lab_run_measures_every_combination_type_on_both_tasks():
    line = run(RunSpec(method="lora", rank=1, **TINY))
    losses = line["merge_lab"]["losses"]
    assert set(losses) == {"base", "recipes", "arithmetic", *MERGE_TYPES}
    assert all(set(v) == {"recipes", "arithmetic"} and math.isfinite(v["recipes"] + v["arithmetic"])
               for v in losses.values())
    assert line["metrics"]["val_loss"] == pytest.approx(np.mean(list(losses["cat"].values())))
    assert line["trainable_params"] == 1 * (128 + 128) * 2 * 4  # one adapter: r·(in + out), q and v, 4 blocks


def test_the_full_run_of_the_merge_lab_is_joint_fine_tuning_on_both_corpora():
    line = run(RunSpec(method="full", rank=None, **{**TINY, "lr": 1e-3}))
    losses = line["merge_lab"]["losses"]
    assert set(losses) == {"base", "joint"} and line["adapter_bytes"] is None
    assert line["trainable_fraction"] == 1.0


def test_a_merge_that_weights_the_second_adapter_zero_measures_the_first_adapter_alone():
    model = GPT(GPTConfig.preset("nano"), seed=0)
    for name, seed in (("one", 1), ("two", 2)):
        add_adapter(model, name, LoraConfig(r=2, init_lora_weights=False, seed=seed))
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, 600)

    def evaluate(m):
        return {"text": estimate_loss(m, ids, batch_size=4, max_batches=2, block_size=16)}

    set_adapter(model, "one")
    alone = evaluate(model)
    losses = merge_losses(model, ("one", "two"), evaluate, weights=(1.0, 0.0), types=("cat", "svd", "linear"))
    for kind in ("cat", "svd", "linear"):
        assert losses[kind]["text"] == pytest.approx(alone["text"], abs=1e-5)
    assert adapter_names(model) == ["one", "two"]                 # each merged adapter is deleted again


def lab_results() -> list[dict]:
    """A merge-lab LoRA line and its full line, with losses chosen so the differences are easy to read."""
    losses = {"base": {"recipes": 2.0, "arithmetic": 1.0}, "recipes": {"recipes": 1.0, "arithmetic": 1.2},
              "arithmetic": {"recipes": 2.2, "arithmetic": 0.5}, "cat": {"recipes": 1.5, "arithmetic": 0.75},
              "ties": {"recipes": 1.25, "arithmetic": 1.0}}
    lab = {"corpora": ["recipes", "arithmetic"], "weights": [1.0, 1.0], "density": 0.5, "losses": losses}
    joint = {**lab, "losses": {"base": losses["base"], "joint": {"recipes": 0.9, "arithmetic": 0.4}}}
    common = {"task": "merge-lab", "seed": 0, "status": "ok",
              "metrics": {"val_loss": 1.0, "base_val_loss": 1.5}}
    return [{**common, "method": "lora", "rank": 8, "merge_lab": lab},
            {**common, "method": "full", "rank": None, "merge_lab": joint}]


def test_each_model_is_scored_by_what_it_gives_up_on_each_task_against_that_tasks_own_adapter():
    rows = {r["name"]: r for r in merge_lab_rows(lab_results())}
    assert rows["cat"]["excess"] == {"recipes": 0.5, "arithmetic": 0.25}      # 1.5 − 1.0, 0.75 − 0.5
    assert rows["ties"]["excess"] == {"recipes": 0.25, "arithmetic": 0.5}
    assert rows["recipes"]["excess"]["recipes"] == 0.0 and rows["joint"]["kind"] == "joint"
    assert rows["joint"]["excess"]["recipes"] == pytest.approx(-0.1)          # better than the own adapter


def test_the_merge_lab_table_and_figure_come_from_a_small_results_file(tmp_path):
    text = merge_lab_markdown(lab_results())
    assert "| ties | 1.2500 | 1.0000 | +0.2500 | +0.5000 |" in text
    assert "| joint full fine-tuning (both corpora) | 0.9000 | 0.4000 | -0.1000 | -0.1000 |" in text
    with open(tmp_path / "results.jsonl", "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lab_results())
    written = plot_all(tmp_path, formats=("png",), log=lambda _: None)
    assert str(tmp_path / "figures" / "merge_lab.png") in written


# ---- docs/results.md holds what the committed merge lab gives ---------------------------------------
ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "sweeps" / "merge-lab"


def test_the_results_page_holds_exactly_what_the_committed_merge_lab_gives():
    text = (ROOT / "docs" / "results.md").read_text()
    begin, end = "<!-- merge_lab_markdown: begin -->", "<!-- merge_lab_markdown: end -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    assert text.split(begin)[1].split(end)[0].strip() == merge_lab_markdown(read_results(COMMITTED))


def test_the_committed_merge_lab_shows_what_the_results_page_says():
    rows = {r["name"]: r for r in merge_lab_rows(read_results(COMMITTED))}
    merges = {n: r for n, r in rows.items() if r["kind"] == "merge"}
    assert set(merges) == set(MERGE_TYPES)
    base, loss = rows["base"]["loss"], lambda name, task: rows[name]["loss"][task]  # noqa: E731
    # no combined adapter keeps both tasks; joint full fine-tuning comes close to both
    assert all(min(r["excess"].values()) > 0 for r in merges.values())
    assert max(rows["joint"]["excess"].values()) < 0.05
    # interference: the recipes adapter far above the base on sums; cat still above it
    assert loss("recipes", "arithmetic") > base["arithmetic"] + 1.0
    assert loss("cat", "arithmetic") > base["arithmetic"]
    # factor types worse than the base on both tasks, DARE on the factors the worst of all
    for name in ("linear", "magnitude_prune", "dare_linear", "dare_ties"):
        assert loss(name, "recipes") > base["recipes"] and loss(name, "arithmetic") > base["arithmetic"]
    for task in ("recipes", "arithmetic"):
        assert max(rows, key=lambda n: loss(n, task)) == "dare_linear"
    # TIES: best on sums (ties) and on recipes (ties_svd) among the combined adapters
    assert min(merges, key=lambda n: loss(n, "arithmetic")) == "ties"
    assert min(merges, key=lambda n: loss(n, "recipes")) == "ties_svd"
