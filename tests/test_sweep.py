"""The rank sweep: what it finds (knee, recovery, spectrum), how it stores, resumes and scales out."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinylora.experiments.analysis import cumulative_energy, energy_rank, knee_rank, recovered_fraction
from tinylora.experiments.plots import KNEE_FACTOR
from tinylora.experiments.sweep import SweepConfig, read_results, run_sweep

pytestmark = pytest.mark.slow
TINY = dict(tasks=("domain",), ranks=(1, 2), steps=3, include_full=False)


def by_key(results):
    return {(r["task"], r["method"], r["rank"]): r for r in results}


@pytest.fixture(scope="session")
def default_sweep(tmp_path_factory):
    """`tinylora sweep` with no arguments: both tasks, ranks 1..32 and full fine-tuning, one seed."""
    out = tmp_path_factory.mktemp("default_sweep")
    return by_key(run_sweep(SweepConfig(), str(out), progress=False, log=lambda *_: None))


def planted_errors(results):
    lora = sorted((r["rank"], r["metrics"]["rel_error"]) for (t, m, _), r in results.items()
                  if t == "planted" and m == "lora")
    floor = results[("planted", "full", None)]["metrics"]["rel_error"]
    return [r for r, _ in lora], [e for _, e in lora], floor


def test_planted_task_knee_is_at_the_planted_rank_four(default_sweep):
    """Error stays high below k* = 4 (50x the floor at r = 2) and is within 5x of full fine-tuning's floor
    from r = 4 on."""
    ranks, errors, floor = planted_errors(default_sweep)
    assert knee_rank(ranks, errors, floor, factor=KNEE_FACTOR) == 4


def test_planted_task_knee_moves_with_the_planted_rank_two(tmp_path):
    config = SweepConfig(tasks=("planted",), ranks=(1, 2, 4), k_star=2, steps=300)
    results = by_key(run_sweep(config, str(tmp_path), progress=False, log=lambda *_: None))
    ranks, errors, floor = planted_errors(results)
    assert knee_rank(ranks, errors, floor, factor=KNEE_FACTOR) == 2


def test_domain_task_every_lora_rank_improves_on_the_base_and_full_fine_tuning_improves_most(default_sweep):
    full = default_sweep[("domain", "full", None)]["metrics"]
    for r in (1, 2, 4, 8, 16, 32):
        lora = default_sweep[("domain", "lora", r)]["metrics"]["val_loss"]
        assert full["val_loss"] < lora < full["base_val_loss"], r


def test_domain_task_recovered_fraction_grows_from_rank_1_to_rank_8(default_sweep):
    full = default_sweep[("domain", "full", None)]["metrics"]
    lora = [default_sweep[("domain", "lora", r)]["metrics"]["val_loss"] for r in (1, 8)]
    recovered = [recovered_fraction(full["base_val_loss"], loss, full["val_loss"]) for loss in lora]
    assert recovered[1] > recovered[0]


def test_lora_trains_under_two_percent_of_parameters_at_rank_four(default_sweep):
    assert default_sweep[("domain", "lora", 4)]["trainable_fraction"] < 0.02


@pytest.mark.parametrize("rank", [4, 8])
def test_domain_task_lora_recovers_at_least_90_percent_of_full_fine_tuning_with_under_2_percent_trainable(
        default_sweep, rank):
    """Base 1.75 -> full 0.275 nats/char; LoRA on q, v reaches 0.40 at r = 4 (91%) and 0.37 at r = 8 (93%)."""
    full = default_sweep[("domain", "full", None)]["metrics"]
    lora = default_sweep[("domain", "lora", rank)]
    assert recovered_fraction(full["base_val_loss"], lora["metrics"]["val_loss"], full["val_loss"]) >= 0.9
    assert lora["trainable_fraction"] < 0.02


def test_full_fine_tuning_update_concentrates_its_energy_in_few_directions(default_sweep):
    """ΔW = W_ft − W0: its top 8 of 128 directions carry more than twice a random matrix's share of energy
    (0.50-0.63 against 0.21 in the default sweep), and 90% of its energy needs under half as many
    directions (25-30 against 66)."""
    analysis = default_sweep[("domain", "full", None)]["analysis"]
    for layer, spectrum in analysis["delta_spectra"].items():
        spectrum, random = np.array(spectrum), np.array(analysis["random_spectra"][layer])
        assert cumulative_energy(spectrum)[7] > 1.8 * cumulative_energy(random)[7], layer
        assert energy_rank(spectrum, 0.9) < 0.6 * energy_rank(random, 0.9), layer


def test_results_file_has_one_line_per_run_with_the_documented_fields(tmp_path):
    results = run_sweep(SweepConfig(**TINY), str(tmp_path), progress=False, log=lambda *_: None)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(results) == 2
    first = json.loads(lines[0])
    for key in ("run_id", "spec", "seed", "metrics", "curve", "trainable_params", "adapter_bytes", "seconds",
                "versions"):
        assert key in first


def test_rerunning_a_finished_sweep_runs_nothing_and_duplicates_nothing(tmp_path):
    run_sweep(SweepConfig(**TINY), str(tmp_path), progress=False, log=lambda *_: None)
    messages = []
    run_sweep(SweepConfig(**TINY), str(tmp_path), progress=False, log=messages.append)
    assert "0 to run" in messages[0]
    assert len(read_results(str(tmp_path))) == 2


def test_a_damaged_line_is_skipped_with_a_warning_and_its_run_is_redone(tmp_path):
    first, second = run_sweep(SweepConfig(**TINY), str(tmp_path), progress=False, log=lambda *_: None)
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second)[:40] + "\n")   # the second cut short
    messages = []
    with pytest.warns(UserWarning, match=r"results.jsonl:2: skipped a line \(not valid JSON"):
        resumed = run_sweep(SweepConfig(**TINY), str(tmp_path), progress=False, log=messages.append)
    assert "1 already done, 1 to run" in messages[0]
    assert [r["metrics"] for r in resumed] == [first["metrics"], second["metrics"]]
    assert len(path.read_text().splitlines()) == 2


def sweep_command(out):
    return [sys.executable, "-m", "tinylora.cli", "sweep", "--task", "domain", "--ranks", "1,2,4",
            "--steps", "4", "--out", str(out), "--no-progress"]


def test_a_sweep_killed_midway_resumes_to_the_same_results_as_an_uninterrupted_one(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    process = subprocess.Popen(sweep_command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_results(str(killed))) < 1:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 1 <= len(read_results(str(killed))) < 4, "the kill should land mid-sweep"
    subprocess.run(sweep_command(killed), check=True, capture_output=True)
    subprocess.run(sweep_command(clean), check=True, capture_output=True)
    resumed, reference = read_results(str(killed)), read_results(str(clean))
    assert sorted(r["run_id"] for r in resumed) == sorted(r["run_id"] for r in reference)
    assert len({r["run_id"] for r in resumed}) == len(resumed) == 4
    reference = {r["run_id"]: r for r in reference}
    for r in resumed:
        assert r["metrics"] == reference[r["run_id"]]["metrics"]


def test_full_checkpoint_bytes_is_the_base_model_alone_even_when_a_lora_run_comes_first(
        monkeypatch, tmp_path):
    """Before: the first run in a process fixed the number, so a LoRA-first worker counted its adapter in."""
    from tinylora.experiments import tasks
    from tinylora.io import save_model
    from tinylora.pretrained import load_base

    monkeypatch.setattr(tasks, "_CHECKPOINT_BYTES", {})
    result = tasks.run(tasks.RunSpec(task="domain", method="lora", rank=32, steps=1, init="kaiming"))
    save_model(load_base()[0], tmp_path / "base.npz")
    assert result["full_checkpoint_bytes"] == os.path.getsize(tmp_path / "base.npz")


def test_every_run_pins_its_blas_thread_count_even_inside_a_wider_thread_pool(monkeypatch):
    """The serial executor runs in the caller's process, which may use 2+ BLAS threads; the run must not."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from tinylora.experiments import tasks
    seen = []

    def record_threads(spec, progress):
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return {"metrics": {}, "_counts": (0, 1)}
    monkeypatch.setattr(tasks, "_run_domain", record_threads)
    with threadpool_limits(limits=2, user_api="blas"):
        tasks.run(tasks.RunSpec(task="domain", method="lora", rank=1))
    assert seen and set(seen) == {tasks.RUN_BLAS_THREADS}


# Promise checked by the next two tests: on ONE machine, every executor gives bit-identical
# numbers (each run pins its BLAS threads). Across machines only ~1e-6 agreement is promised.
def test_process_pool_gives_the_same_numbers_as_serial(tmp_path):
    serial = run_sweep(SweepConfig(**TINY), str(tmp_path / "serial"), progress=False, log=lambda *_: None)
    pooled = run_sweep(SweepConfig(**TINY), str(tmp_path / "pool"), workers=2, progress=False,
                       log=lambda *_: None)
    assert {r["run_id"]: r["metrics"] for r in serial} == {r["run_id"]: r["metrics"] for r in pooled}


def test_dask_local_cluster_gives_the_same_numbers_as_serial(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  processes=True) as cluster:
        dask = run_sweep(SweepConfig(**TINY), str(tmp_path / "dask"), scheduler=cluster.scheduler_address,
                         progress=False, log=lambda *_: None)
    serial = run_sweep(SweepConfig(**TINY), str(tmp_path / "serial"), progress=False, log=lambda *_: None)
    assert {r["run_id"]: r["metrics"] for r in dask} == {r["run_id"]: r["metrics"] for r in serial}


# ---- bad input, refused before any run starts ---------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (dict(tasks=("poetry",)), r"unknown task\(s\) \['poetry'\]; choose from"),
    (dict(ranks=()), "ranks must be a non-empty list of positive ints"),
    (dict(ranks=(4, 0)), r"ranks must be a non-empty list of positive ints, got \[4, 0\]"),
    (dict(steps=0), "steps must be a positive int, got 0"),
    (dict(batch_size=0), "SweepConfig: batch_size must be a positive int, got 0"),
    (dict(lr=0.0), "SweepConfig: lr must be a number > 0, got 0.0"),
    (dict(seeds=(0.5,)), r"seeds must be a non-empty list of ints, got \[0.5\]"),
])
def test_bad_sweep_config_is_refused_at_creation(overrides, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(**overrides)


@pytest.mark.parametrize("overrides, message", [
    (dict(rslora="yes"), "SweepConfig: rslora must be True or False, got 'yes'"),
    (dict(alpha=True), r"SweepConfig: alpha must be a number, got True \(bool\)"),
])
def test_sweep_config_of_the_wrong_type_is_refused_with_a_type_error(overrides, message):
    with pytest.raises(TypeError, match=message):
        SweepConfig(**overrides)


def test_rank_larger_than_the_targeted_layers_allow_is_refused_before_running(tmp_path):
    with pytest.raises(ValueError, match=r"r=200 is larger than min\(in, out\) = 128"):
        run_sweep(SweepConfig(tasks=("domain",), ranks=(200,)), str(tmp_path), progress=False)
    assert not (tmp_path / "results.jsonl").exists()


def test_unknown_target_module_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"matched no Linear layer.*q_proj"):
        run_sweep(SweepConfig(tasks=("domain",), targets=("query",)), str(tmp_path), progress=False)


def test_folder_of_a_different_sweep_is_refused_with_how_to_start_fresh(tmp_path):
    run_sweep(SweepConfig(**TINY), str(tmp_path), progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match=r"different sweep.*'steps': \(3, 5\).*another --out"):
        run_sweep(SweepConfig(**{**TINY, "steps": 5}), str(tmp_path), progress=False)


def test_unreachable_scheduler_fails_within_seconds_naming_the_address(tmp_path):
    start = time.time()
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        run_sweep(SweepConfig(**TINY), str(tmp_path), scheduler="tcp://127.0.0.1:9", progress=False)
    assert time.time() - start < 10


def test_cli_quick_sweep_prints_the_summary_and_where_the_figures_are(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tinylora.cli", "sweep", "--quick", "--out", str(tmp_path),
                          "--no-progress"], check=True, capture_output=True, text=True).stdout
    assert "figures:" in out and "|" in out
    assert os.path.exists(tmp_path / "summary.csv")
