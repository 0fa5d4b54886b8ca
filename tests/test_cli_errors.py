"""The command line's bad inputs and faults: one line on stderr naming the flag or the path, the right exit
code, and nothing written before every flag has been checked."""
from __future__ import annotations

import contextlib
import errno
import json
import os

import pytest

from tinylora import cli
from tinylora.experiments import drawing, folder, sweep
from tinylora.experiments.results import RESULTS_NAME, SWEEP_NAME, read_results, write_results
from tinylora.experiments.tasks import RunSpec


def run_cli(capsys, *argv) -> tuple[int, list[str]]:
    """(exit code, the non-blank lines on stderr) of ``tinylora ARGV``, run in this process."""
    code = cli.main([str(a) for a in argv])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def instant_run(spec, progress=False):
    """tasks.run without the training (these tests are about what happens around the runs)."""
    spec = RunSpec.from_dict(spec) if isinstance(spec, dict) else spec
    return {"run_id": spec.run_id, "task": spec.task, "method": spec.method, "rank": spec.rank,
            "metrics": {"val_loss": 1.0, "base_val_loss": 1.75}}


@pytest.fixture
def no_runs(monkeypatch):
    """Any run that starts fails the test: these inputs must be refused before the first run."""
    def refuse(spec, progress=False):
        raise AssertionError("a run started")
    monkeypatch.setattr(sweep, "run", refuse)


# (arguments after `tinylora`, a fragment the one-line message must hold)
SWEEP_BAD = [
    (["--alpha", "inf"], "argument --alpha: expected a finite number > 0, got 'inf'"),
    (["--alpha", "nan"], "argument --alpha: expected a finite number > 0, got 'nan'"),
    (["--alpha", "0"], "argument --alpha"),
    (["--alpha", "-1"], "argument --alpha"),
    (["--lr", "0"], "argument --lr: expected a finite number > 0, got '0'"),
    (["--lr", "-1e-3"], "argument --lr"),
    (["--lr", "inf"], "argument --lr"),
    (["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (["--full-lr", "nan"], "argument --full-lr"),
    (["--seeds", "-1"], "argument --seeds: expected comma-separated integers >= 0 such as 0,1,2, got '-1'"),
    (["--seeds", "0,-2"], "argument --seeds"),
    (["--seeds", "one"], "argument --seeds"),
    (["--ranks", "0"], "argument --ranks: expected comma-separated integers >= 1 such as 1,2,4, got '0'"),
    (["--ranks", "1,x"], "argument --ranks"),
    (["--ranks", ","], "argument --ranks"),
    (["--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
    (["--steps", "-5"], "argument --steps"),
    (["--steps", "2.5"], "argument --steps: expected an integer, got '2.5'"),
    (["--k-star", "0"], "argument --k-star: expected an integer >= 1, got '0'"),
    (["--k-star", "-1"], "argument --k-star"),
    (["--k-star", "17"], "k_star must be an int in [1, 16], got 17"),
    (["--corpus", "poems"], "corpus must be one of ['arithmetic', 'cookbook', 'fables', 'recipes'], got "),
    (["--task", "poetry"], "unknown task(s) ['poetry']"),
    (["--task", "planted", "--ranks", "200"], "r=200 is larger than min(in, out) = 128"),
    (["--task", "domain", "--ranks", "1,200"], "r=200 is larger than min(in, out) = 128"),
    (["--targets", "query"], "target_modules ('query',) matched no"),
    (["--workers", "0"], "argument --workers: expected an integer >= 1, got '0'"),
    (["--workers", "-2"], "argument --workers"),
    (["--scheduler", "localhost"], "--scheduler must look like tcp://host:port, got 'localhost'"),
    (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"),
    (["--quick", "--ranks", "0"], "argument --ranks"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--targets", ""], "targets must be a non-empty list of module names, got []"),
    (["--task", ""], "unknown task(s) []"),
    (["--ranks", "99999999999999999999", "--task", "domain"], "r=99999999999999999999 is larger than"),
    (["--lr", "1e400"], "argument --lr: expected a finite number > 0, got '1e400'"),
]


@pytest.mark.parametrize("args, fragment", SWEEP_BAD, ids=[" ".join(a) for a, _ in SWEEP_BAD])
def test_every_bad_sweep_setting_is_one_line_exit_2_and_nothing_is_written(capsys, tmp_path, no_runs, args,
                                                                          fragment):
    """Before: --corpus, planted ranks above the matrix size, --k-star 0 or too large, negative --seeds and
    --alpha inf were checked only after sweep.json was written (some after 20-30 s of work)."""
    out = tmp_path / "sweep"
    code, lines = run_cli(capsys, "sweep", *args, "--out", out, "--no-progress")
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert lines[0].startswith(("tinylora sweep: error: ", "tinylora: error: "))
    assert not out.exists()


OTHER_BAD = [
    (["demo", "--steps", "-1"], "argument --steps: expected an integer >= 1, got '-1'"),
    (["demo", "--steps", "0"], "argument --steps"),
    (["demo", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["generate", "--prompt", ""], "argument --prompt: expected a non-empty text, got ''"),
    (["generate", "--max-new-tokens", "0"], "argument --max-new-tokens"),
    (["generate", "--temperature", "-1"], "argument --temperature"),
    (["generate", "--temperature", "nan"], "argument --temperature"),
    (["generate", "--top-k", "0"], "argument --top-k"),
    (["generate", "--top-p", "0"], "argument --top-p"),
    (["generate", "--top-p", "1.5"], "argument --top-p"),
    (["generate", "--model", "missing.npz"], "missing.npz"),
    (["pretrain", "--steps", "0"], "argument --steps"),
    (["pretrain", "--corpus-chars", "0"], "argument --corpus-chars"),
    (["pretrain", "--out", ""], "argument --out: expected a non-empty text, got ''"),
    (["sweep", "--out", ""], "argument --out: expected a non-empty text, got ''"),
    (["plot", ""], "argument directory: expected a non-empty text, got ''"),
    (["demo", "--steps", "1e3"], "argument --steps: expected an integer, got '1e3'"),
    (["generate", "--model", "missing.gguf"], "no file or folder at 'missing.gguf'"),
    (["plot", "missing"], "no results.jsonl in"),
    (["report", "missing"], "no results.jsonl in"),
    (["bench", "nothing"], "argument which: invalid choice: 'nothing'"),
    # Before: each benchmark's own parser printed its usage (2 to 6 lines) above the error.
    *[(["bench", which, "--nope"], f"tinylora bench {which}: error: unrecognized arguments: --nope")
      for which in ("engine", "gpt", "lora", "llm", "llm-lora")],
    (["bench", "llm-lora", "--repeat", "x"], "argument --repeat: invalid int value: 'x'"),
    (["nothing"], "invalid choice: 'nothing'"),
]


@pytest.mark.parametrize("args, fragment", OTHER_BAD, ids=[" ".join(a) or "''" for a, _ in OTHER_BAD])
def test_every_bad_flag_of_the_other_commands_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, args,
                                                                    fragment):
    monkeypatch.chdir(tmp_path)
    code, lines = run_cli(capsys, *args)
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines


# ---- a folder left usable -------------------------------------------------------------------------
def test_the_corrected_command_runs_in_the_folder_a_refused_one_named(capsys, monkeypatch, tmp_path):
    """Before: the refused sweep had written sweep.json, so the corrected one was "a different sweep"."""
    out = tmp_path / "sweep"
    assert run_cli(capsys, "sweep", "--task", "domain", "--corpus", "poems", "--out", out)[0] == 2
    monkeypatch.setattr(sweep, "run", instant_run)
    code, _ = run_cli(capsys, "sweep", "--task", "domain", "--ranks", "1", "--out", out, "--no-progress")
    assert code == 0 and len(read_results(out)) == 2


def test_a_folder_whose_sweep_finished_no_run_takes_the_new_config_with_a_note(monkeypatch, tmp_path):
    (tmp_path / SWEEP_NAME).write_text(json.dumps({"tasks": ["domain"], "corpus": "poems"}))
    monkeypatch.setattr(sweep, "run", instant_run)
    messages = []
    config = sweep.SweepConfig(tasks=("domain",), ranks=(1,), include_full=False)
    sweep.run_sweep(config, str(tmp_path), progress=False, log=messages.append)
    assert any("finished no run" in m and "replaced" in m for m in messages)
    assert json.loads((tmp_path / SWEEP_NAME).read_text()) == config.to_dict()


def test_a_damaged_sweep_json_is_one_line_naming_the_file(capsys, no_runs, tmp_path):
    (tmp_path / SWEEP_NAME).write_bytes(b"\xff{")
    code, lines = run_cli(capsys, "sweep", "--task", "domain", "--ranks", "1", "--out", tmp_path)
    assert code == 2 and len(lines) == 1
    assert f"{tmp_path / SWEEP_NAME} is damaged" in lines[0]


# ---- OSErrors: one line naming the path ------------------------------------------------------------
def test_out_that_is_a_file_is_one_line_naming_it(capsys, no_runs, tmp_path):
    """Before: a NotADirectoryError traceback."""
    target = tmp_path / "a_file"
    target.write_text("")
    code, lines = run_cli(capsys, "sweep", "--task", "domain", "--ranks", "1", "--out", target)
    assert code == 2
    assert lines == [f"tinylora sweep: error: {target}: the sweep folder is a file, not a folder"]


def refuse_writes(monkeypatch):
    """A folder the process cannot write in (chmod cannot stop root, so the probe is made to fail)."""
    def temporary_file(dir):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, "tmpXYZ"))
    monkeypatch.setattr(folder.tempfile, "TemporaryFile", temporary_file)


def test_a_read_only_out_folder_is_one_line_exit_2_before_any_run(capsys, monkeypatch, no_runs, tmp_path):
    """Before: a PermissionError traceback, after the model had been loaded."""
    refuse_writes(monkeypatch)
    code, lines = run_cli(capsys, "sweep", "--task", "domain", "--ranks", "1", "--out", tmp_path)
    assert (code, lines) == (2, [f"tinylora sweep: error: {tmp_path}: the sweep folder cannot be written "
                                 "(Permission denied)"])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes in read-only folders")
def test_a_folder_made_read_only_with_chmod_is_refused_the_same_way(capsys, no_runs, tmp_path):
    tmp_path.chmod(0o555)
    try:
        code, lines = run_cli(capsys, "sweep", "--task", "domain", "--ranks", "1", "--out", tmp_path)
    finally:
        tmp_path.chmod(0o755)
    assert code == 2 and lines == [f"tinylora sweep: error: {tmp_path}: the sweep folder cannot be written "
                                   "(Permission denied)"]


def test_pretrain_out_in_a_read_only_folder_is_refused_before_training(capsys, monkeypatch, tmp_path):
    """Before: the read-only --out was found only after training, when the checkpoint was saved."""
    import tinylora.pretrained
    monkeypatch.setattr(tinylora.pretrained, "pretrain", lambda *a, **k: pytest.fail("training started"))
    refuse_writes(monkeypatch)
    code, lines = run_cli(capsys, "pretrain", "--out", tmp_path / "model.npz")
    assert code == 2
    assert lines == [f"tinylora pretrain: error: {tmp_path}: the folder of --out cannot be written "
                     "(Permission denied)"]


@pytest.mark.parametrize("out, message", [
    ("{tmp}", "{tmp}: --out is a folder; give a file name such as model.npz"),
    ("{tmp}/file/model.npz", "{tmp}/file: the folder of --out is a file, not a folder"),
])
def test_pretrain_out_that_cannot_be_a_file_is_one_line(capsys, monkeypatch, tmp_path, out, message):
    import tinylora.pretrained
    monkeypatch.setattr(tinylora.pretrained, "pretrain", lambda *a, **k: pytest.fail("training started"))
    (tmp_path / "file").write_text("")
    code, lines = run_cli(capsys, "pretrain", "--out", out.format(tmp=tmp_path))
    assert (code, lines) == (2, [f"tinylora pretrain: error: {message.format(tmp=tmp_path)}"])


@contextlib.contextmanager
def disk_full(path, mode="wb"):
    raise OSError(errno.ENOSPC, "No space left on device")
    yield  # pragma: no cover


def finished_sweep(folder_path):
    write_results(folder_path, [{"run_id": f"r{r}", "task": "domain", "method": "lora", "rank": r, "seed": 0,
                                 "metrics": {"val_loss": 1.0 / r, "base_val_loss": 1.75}} for r in (1, 2)])


def test_disk_full_while_writing_figures_is_one_line_naming_the_file_exit_1(capsys, monkeypatch, tmp_path):
    """Before: an OSError traceback from inside matplotlib's save."""
    finished_sweep(tmp_path)
    monkeypatch.setattr(drawing, "atomic_writer", disk_full)
    code, lines = run_cli(capsys, "plot", tmp_path)
    assert code == 1
    assert lines[-1] == (f"tinylora plot: error: {tmp_path / 'figures' / 'domain_metric_vs_rank.png'}: "
                         "No space left on device")


def test_disk_full_while_recording_a_run_is_one_line_naming_results_jsonl_exit_1(capsys, monkeypatch,
                                                                                 tmp_path):
    monkeypatch.setattr(sweep, "run", instant_run)

    def full(directory, line):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(directory, RESULTS_NAME))
    monkeypatch.setattr(sweep, "append_result", full)
    code, lines = run_cli(capsys, "sweep", "--task", "domain", "--ranks", "1", "--out", tmp_path,
                          "--no-progress")
    assert code == 1
    assert lines == [f"tinylora sweep: error: {tmp_path / RESULTS_NAME}: No space left on device"]


def test_plot_into_a_figures_path_that_is_a_file_is_one_line_before_drawing(capsys, tmp_path):
    finished_sweep(tmp_path)
    (tmp_path / "figures").write_text("")
    code, lines = run_cli(capsys, "plot", tmp_path)
    assert code == 2
    figures = tmp_path / "figures"
    assert lines == [f"tinylora plot: error: {figures}: the figures folder is a file, not a folder"]


# ---- FloatingPointError and Ctrl-C ------------------------------------------------------------------
def test_floating_point_error_is_one_line_and_exit_1(capsys, monkeypatch, tmp_path):
    """Before: a traceback ending in FloatingPointError at extreme learning rates."""
    import tinylora.pretrained

    def diverge(*args, **kwargs):
        raise FloatingPointError("training loss became nan at step 3; lower the learning rate (lr=1000.0)")
    monkeypatch.setattr(tinylora.pretrained, "pretrain", diverge)
    code, lines = run_cli(capsys, "pretrain", "--out", tmp_path / "model.npz")
    assert (code, lines) == (1, ["tinylora pretrain: error: training loss became nan at step 3; lower the "
                                 "learning rate (lr=1000.0)"])


def test_ctrl_c_outside_a_sweep_is_one_line_saying_what_was_kept_and_exit_130(capsys, monkeypatch, tmp_path):
    import tinylora.pretrained

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(tinylora.pretrained, "pretrain", interrupted)
    code, lines = run_cli(capsys, "pretrain", "--out", tmp_path / "model.npz")
    assert (code, lines) == (130, ["tinylora pretrain: interrupted; no checkpoint was written (it is saved "
                                   "when training ends)"])
