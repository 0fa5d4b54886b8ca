"""Learning against forgetting: the toy domain task measures it, and the table and figures read it back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinylora.experiments import tasks
from tinylora.experiments.forgetting import (
    figure_learning_vs_forgetting,
    figure_real_metrics_vs_rank,
    forgetting_markdown,
    forgetting_task,
    learning_forgetting_points,
    real_sweep_markdown,
    recovered_share,
)
from tinylora.experiments.summary import MissingData
from tinylora.experiments.sweep import SweepConfig, read_results, run_sweep
from tinylora.pretrained import load_base
from tinylora.train import estimate_loss


def line(task, method, rank, val, forget, targets=("q_proj", "v_proj"), **extra):
    """A results line with base losses 2.0 (task) and 0.5 (what the base did well)."""
    return {"task": task, "method": method, "rank": rank, "targets": list(targets), "seed": 0,
            "status": "ok", "trainable_params": 100 * (rank or 50),
            "metrics": {"val_loss": val, "base_val_loss": 2.0, "forget_loss": forget, "base_forget_loss": 0.5,
                        "accuracy": 0.5, "base_accuracy": 0.0}, **extra}


REAL = [line("cards", "lora", 2, 1.2, 0.55), line("cards", "lora", 8, 0.8, 0.6),
        line("cards", "full", None, 0.4, 0.9), line("cards", "full", None, 0.0, 1.5, targets=("all-linear",))]


def test_learning_is_the_fall_in_task_loss_and_forgetting_the_rise_in_the_old_loss():
    points = {p["label"]: p for p in learning_forgetting_points(REAL)}
    assert points["LoRA r=8"]["learning"] == pytest.approx(1.2)
    assert points["LoRA r=8"]["forgetting"] == pytest.approx(0.1)
    assert points["full: all-linear"]["forgetting"] == pytest.approx(1.0)


def test_each_rank_recovers_its_share_of_each_full_fine_tuning_runs_gain():
    shares = recovered_share(learning_forgetting_points(REAL))
    # r = 2 learned 0.8 of full q,v's 1.6 and of all-linear's 2.0
    assert shares["LoRA r=2"] == pytest.approx({"full: q_proj+v_proj": 0.5, "full: all-linear": 0.4})


def test_a_real_model_task_is_shown_before_the_toy_domain_task():
    toy = [line("domain", "lora", 2, 1.0, 0.7)]
    assert forgetting_task(toy + REAL) == "cards" and forgetting_task(toy) == "domain"


def test_diverged_runs_and_runs_without_the_old_loss_are_left_out():
    diverged = dict(line("cards", "lora", 4, 0.1, 0.5), status="diverged")
    older = line("cards", "lora", 16, 0.1, None)
    labels = [p["label"] for p in learning_forgetting_points(REAL + [diverged, older])]
    assert labels == ["LoRA r=2", "LoRA r=8", "full: all-linear", "full: q_proj+v_proj"]


def test_the_table_has_the_base_row_and_one_share_column_per_full_run():
    table = forgetting_markdown(REAL).splitlines()
    assert table[0].endswith("| share of full: all-linear | share of full: q_proj+v_proj |")
    assert table[2].startswith("| base (no fine-tuning) | 0 | 2.000 | 0% | 0.5000 |")
    assert table[3] == "| LoRA r=2 | 200 | 1.200 | 50% | 0.5500 | 0.8000 | 0.0500 | 40% | 50% |"


def test_the_figures_say_what_data_they_miss():
    with pytest.raises(MissingData, match="forget_loss"):
        figure_learning_vs_forgetting([line("cards", "lora", 2, 1.0, None)])
    with pytest.raises(MissingData, match="real-model"):
        figure_real_metrics_vs_rank([line("domain", "lora", 2, 1.0, 0.7)])


def test_the_learning_against_forgetting_figure_has_a_point_per_run():
    fig = figure_learning_vs_forgetting(REAL)
    ax = fig.axes[0]
    assert sum(len(artist.get_xdata()) for artist in ax.get_lines() if artist.get_marker() in "os") == 4


# ---- the toy domain task measures forgetting on the fables its base was pre-trained on -------------
TOY = dict(task="domain", method="lora", rank=2, steps=3, init="kaiming", lr=2e-2)


def test_the_domain_tasks_base_forgetting_loss_is_the_base_models_held_out_fables_loss():
    result = tasks.run(tasks.RunSpec(**TOY))
    model, _ = load_base()
    expected = estimate_loss(model, tasks.fables_held_out(), batch_size=16, max_batches=tasks.EVAL_BATCHES,
                             block_size=64)
    assert result["metrics"]["base_forget_loss"] == pytest.approx(expected, rel=1e-6)
    assert result["metrics"]["forget_loss"] != result["metrics"]["base_forget_loss"]


def test_measuring_forgetting_leaves_the_domain_tasks_other_metrics_as_they_were(monkeypatch):
    with_forgetting = tasks.run(tasks.RunSpec(**TOY))["metrics"]
    fables = tasks.fables_held_out()
    real = tasks.estimate_loss
    monkeypatch.setattr(tasks, "estimate_loss",  # the fables evaluations skipped, as before they existed
                        lambda model, ids, **kw: 0.0 if ids is fables else real(model, ids, **kw))
    monkeypatch.setattr(tasks, "fables_held_out", lambda: fables)
    without = tasks.run(tasks.RunSpec(**TOY))["metrics"]
    assert {k: with_forgetting[k] for k in ("val_loss", "base_val_loss")} == \
        {k: without[k] for k in ("val_loss", "base_val_loss")}


# ---- issue 14: a planted run's id names the layer it adapts, and older ids still resume -------------
def test_a_planted_runs_id_names_the_planted_layer_not_the_targets():
    spec = tasks.RunSpec(task="planted", method="lora", rank=2)
    assert "-blocks.3.attn.v_proj-" in spec.run_id and "q_proj" not in spec.run_id
    assert spec.legacy_run_id.split("-")[-1] == spec.run_id.split("-")[-1]  # the same digest


@pytest.mark.slow
def test_a_folder_written_with_the_older_planted_ids_resumes_without_running_again(tmp_path):
    config = SweepConfig(tasks=("planted",), ranks=(1,), include_full=False, steps=2)
    run_sweep(config, str(tmp_path), progress=False, log=lambda *_: None)
    path = tmp_path / "results.jsonl"
    first = json.loads(path.read_text())
    spec = tasks.RunSpec.from_dict(first["spec"])
    path.write_text(json.dumps({**first, "run_id": spec.legacy_run_id}) + "\n")
    said = []
    again = run_sweep(config, str(tmp_path), progress=False, log=said.append)
    assert "1 already done" in said[0] and "0 to run" in said[0]
    assert [r["metrics"] for r in again] == [first["metrics"]] and len(read_results(str(tmp_path))) == 1


# ---- the real-model section of docs/results.md is generated from the committed results --------------
ROOT = Path(__file__).resolve().parents[1]
REAL_SWEEP = ROOT / "docs" / "sweeps" / "smollm2-cards"
BEGIN, END = "<!-- real_sweep_markdown: begin -->", "<!-- real_sweep_markdown: end -->"


def with_samples(run, reply):
    sample = {"prompt": "New contact: Vera (41), florist in Ghent.", "base_reply": "Vera is a florist.\nHi",
              "reply": reply}
    return {**run, "model": "smollm2-135m-instruct", "seconds": 100.0, "samples": [sample],
            "spec": {"steps": 16, "batch_size": 4, "n_train": 128, "n_eval": 16, "n_forget": 8,
                     "alpha": 16.0},
            "lr": 2e-3 if run["method"] == "lora" else 1e-4}


def test_the_generated_section_gives_each_ranks_share_and_the_replies_before_and_after():
    runs = [with_samples(r, f"card {i}") for i, r in enumerate(REAL)]
    text = real_sweep_markdown(runs)
    assert "- LoRA r=2 recovers 40% of full: all-linear's gain and 50% of full: q_proj+v_proj's gain." in text
    assert "  - base: `Vera is a florist.⏎Hi`" in text
    assert "  - LoRA r=8: `card 1`" in text and "  - full: all-linear: `card 3`" in text
    assert "8 base answers" in text and "One run took 100–100 s (all 400 s together)" in text


def test_the_results_page_holds_exactly_what_the_committed_real_sweep_gives():
    text = (ROOT / "docs" / "results.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    section = text.split(BEGIN)[1].split(END)[0].strip()
    assert section == real_sweep_markdown(read_results(REAL_SWEEP))


def test_the_committed_real_sweep_is_the_documented_command():
    config = json.loads((REAL_SWEEP / "sweep.json").read_text())
    assert config["model"] == "smollm2-135m-instruct" and config["tasks"] == ["cards"]
    assert config["ranks"] == [1, 2, 4, 8, 16] and config["include_full"]
    methods = sorted((r["method"], r["rank"] or 0, "+".join(r["targets"])) for r in read_results(REAL_SWEEP))
    assert methods == [("full", 0, "all-linear"), ("full", 0, "q_proj+v_proj")] + [
        ("lora", r, "q_proj+v_proj") for r in (1, 2, 4, 8, 16)]


def test_the_sweep_report_of_the_domain_task_shows_the_fables_loss_beside_the_task_loss(tmp_path):
    """The toy base was pre-trained on fables: its held-out fables loss is the toy task's forgetting."""
    from tinylora.experiments.report import report_markdown
    runs = [line("domain", "lora", 1, 1.2, 0.55), line("domain", "lora", 4, 0.6, 0.7),
            line("domain", "full", None, 0.4, 0.9, targets=("all",))]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    text = report_markdown(tmp_path)
    assert "| val_loss mean (min–max) | accuracy | fables loss (forgetting) |" in text
    assert "| lora | 4 | q_proj+v_proj | – | 1 | 0.6000 | 0.500 | 0.7000 | 400 |" in text
    # base 2.0 -> LoRA r=4 0.6 is 1.4 of full's 1.6 (87%); then the fables losses of the same two rows
    assert ("recovers 87% of full fine-tuning's improvement (held-out loss: base 2.000, LoRA 0.6000, full "
            "0.4000). Forgetting, the held-out fables loss: base 0.5000, LoRA 0.7000, full 0.9000.") in text
