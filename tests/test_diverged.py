"""Diverged runs: recorded with status "diverged", a step and a likely cause, never counted as results."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tinylora.experiments import sweep
from tinylora.experiments.figures import figure_domain_metric_vs_rank, plot_all
from tinylora.experiments.report import report_markdown
from tinylora.experiments.results import EXPLODED_FACTOR, divergence, is_diverged, read_results, write_results
from tinylora.experiments.summary import summarize
from tinylora.experiments.sweep import SweepConfig, run_checked, run_sweep
from tinylora.experiments.tasks import RunSpec

SPEC = RunSpec(task="planted", method="lora", rank=4, lr=1e3, steps=25)


def fake_run(metrics):
    """A stand-in for tasks.run that returns ``metrics`` (what a real run at that lr recorded)."""
    def run(spec, progress=False):
        spec = RunSpec.from_dict(spec) if isinstance(spec, dict) else spec
        return {"run_id": spec.run_id, "task": spec.task, "method": spec.method, "rank": spec.rank,
                "seed": spec.seed, "metrics": dict(metrics), "trainable_params": 10, "seconds": 0.1}
    return run


def test_a_run_that_fit_stops_with_floating_point_error_is_recorded_as_diverged_with_its_step(monkeypatch):
    """Before: the FloatingPointError from fit ended the whole sweep with a traceback."""
    def run(spec, progress=False):
        raise FloatingPointError("training loss became nan at step 7; lower the learning rate (lr=1000.0)")
    monkeypatch.setattr(sweep, "run", run)
    line = run_checked(SPEC.to_dict())
    assert line["status"] == "diverged" and line["diverged_step"] == 7
    assert "diverged at step 7" in line["message"] and "learning rate too high" in line["message"]
    assert line["run_id"] == SPEC.run_id and line["spec"] == SPEC.to_dict()


def test_a_nan_metric_marks_the_run_diverged_and_is_stored_as_null(monkeypatch):
    """Before: --lr 1e3 wrote "val_loss": NaN (not even valid JSON) and the sweep exited 0."""
    monkeypatch.setattr(sweep, "run", fake_run({"val_loss": math.nan, "base_val_loss": 1.75}))
    line = run_checked(RunSpec(task="domain", method="lora", rank=4, lr=1e3, steps=25).to_dict())
    assert line["status"] == "diverged" and "val_loss became nan" in line["message"]
    assert "at step 25" in line["message"]                      # after the last step
    assert line["metrics"]["val_loss"] is None
    json.loads(json.dumps(line, allow_nan=False))               # strict JSON: no NaN left in it


@pytest.mark.parametrize("metrics, diverged", [
    ({"rel_error": 113.8, "weight_error": 7.4e8}, True),   # planted task at --lr 1e3
    ({"rel_error": 65.3, "weight_error": 3865.0}, True),   # planted task at --lr 1
    ({"rel_error": 0.65, "weight_error": 2.05}, False),    # planted task at --lr 0.1: poor, not exploded
    ({"val_loss": 7.19, "base_val_loss": 1.75}, True),     # domain at --lr 1e3: 5.44 nats > ln 10 above base
    ({"val_loss": 3.92, "base_val_loss": 1.75}, False),    # domain at --lr 1: 2.17 nats, under ln 10 = 2.30
])
def test_finite_metrics_ten_times_worse_than_not_training_count_as_diverged(metrics, diverged):
    """The rule (EXPLODED_FACTOR = 10): rel_error or weight_error above 10 (1 = untrained), or a
    held-out loss more than ln 10 nats above the base model's. Numbers from real 25-step runs."""
    assert EXPLODED_FACTOR == 10
    assert (divergence({"metrics": metrics}) is not None) is diverged


def test_the_planted_weight_error_of_7e8_is_diverged_not_a_result(monkeypatch):
    """Before: the planted task recorded weight_error 7.4e8 without a word."""
    monkeypatch.setattr(sweep, "run", fake_run({"rel_error": 0.9, "weight_error": 7.4e8}))
    line = run_checked(SPEC.to_dict())
    assert line["status"] == "diverged"
    assert "weight_error is 7.4e+08, over 10x its value without training" in line["message"]


def test_a_healthy_run_is_recorded_with_status_ok(monkeypatch):
    monkeypatch.setattr(sweep, "run", fake_run({"rel_error": 0.05, "weight_error": 0.3}))
    assert run_checked(SPEC.to_dict())["status"] == "ok"


def domain_runs():
    ok = [{"task": "domain", "method": "lora", "rank": r, "seed": 0, "status": "ok",
           "metrics": {"val_loss": 1.2, "base_val_loss": 1.75}} for r in (1, 2)]
    bad = {"task": "domain", "method": "lora", "rank": 8, "seed": 0, "status": "diverged",
           "metrics": {"val_loss": None},
           "message": "diverged at step 25: val_loss became nan; likely cause: ..."}
    return ok + [bad]


def test_summary_counts_a_diverged_run_apart_from_the_seeds():
    rows = {r["rank"]: r for r in summarize(domain_runs())}
    assert (rows[8]["n_seeds"], rows[8]["n_diverged"], rows[8]["mean"]) == (0, 1, None)
    assert (rows[1]["n_seeds"], rows[1]["n_diverged"]) == (1, 0)


def test_an_older_line_with_a_nan_metric_is_diverged_too():
    assert is_diverged({"task": "domain", "method": "lora", "metrics": {"val_loss": math.nan}})


def test_report_shows_a_diverged_run_as_diverged_with_its_message_not_as_zero_seeds(tmp_path):
    """Before: a NaN metric appeared in the report's table as "0" seeds and "–"."""
    write_results(tmp_path, domain_runs())
    report = report_markdown(tmp_path)
    row = next(line for line in report.splitlines() if line.startswith("| lora | 8 |"))
    assert "| 0 (+1 diverged) | diverged |" in row
    assert "- diverged: LoRA r=8, seed 0: diverged at step 25: val_loss became nan" in report
    assert "3 runs, 1 of them diverged (not counted as results)." in report


def test_figures_name_diverged_runs_in_the_caption_and_plot_all_counts_them(tmp_path):
    write_results(tmp_path, domain_runs())
    texts = " ".join(t.get_text() for t in figure_domain_metric_vs_rank(domain_runs()).texts)
    assert "Diverged, so not drawn: LoRA r=8 (1 run)." in " ".join(texts.split())
    notes = []
    plot_all(tmp_path, formats=("png",), log=notes.append)
    assert notes[0].startswith("1 of 3 runs diverged: not drawn")


def test_resuming_does_not_repeat_a_diverged_run(monkeypatch, tmp_path):
    """The same seed and learning rate would diverge the same way, so its line stands."""
    calls = []

    def run(spec, progress=False):
        calls.append(spec.run_id)
        raise FloatingPointError("training loss became inf at step 2; lower the learning rate")
    monkeypatch.setattr(sweep, "run", run)
    config = SweepConfig(tasks=("domain",), ranks=(1,), steps=2, include_full=False)
    first = run_sweep(config, str(tmp_path), progress=False, log=lambda *_: None)
    messages = []
    again = run_sweep(config, str(tmp_path), progress=False, log=messages.append)
    assert len(calls) == 1 and first == again and first[0]["status"] == "diverged"
    assert "1 already done (1 of them diverged), 0 to run" in messages[0]


@pytest.mark.slow
def test_cli_sweep_at_lr_1e3_exits_1_saying_how_many_runs_diverged(tmp_path):
    """Before: `tinylora sweep --lr 1e3` exited 0 with the exploded numbers recorded as results."""
    done = subprocess.run([sys.executable, "-m", "tinylora.cli", "sweep", "--task", "domain", "--ranks", "1",
                           "--steps", "2", "--lr", "1e3", "--out", str(tmp_path), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "tinylora sweep: 1 of 2 runs diverged" in done.stderr
    lines = {r["method"]: r for r in read_results(tmp_path)}
    assert lines["lora"]["status"] == "diverged" and lines["full"]["status"] == "ok"
    assert "| 0 (+1 diverged) | diverged |" in done.stdout
