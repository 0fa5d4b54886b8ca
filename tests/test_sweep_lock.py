"""The sweep folder with real processes: one sweep at a time, appends that lose nothing, resume, Ctrl-C,
kill -9, and no worker left behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tinylora.experiments import sweep
from tinylora.experiments.folder import SweepFolderBusy, folder_lock
from tinylora.experiments.results import DAMAGED_NAME, RESULTS_NAME, SWEEP_NAME, append_result, read_results
from tinylora.experiments.sweep import SweepConfig, run_sweep
from tinylora.experiments.tasks import RunSpec

TINY = dict(tasks=("domain",), ranks=(1, 2), steps=1, include_full=False)


def sweep_command(out, ranks="1,2", steps=1, workers=1):
    """A real sweep of the domain task: one run per rank plus full fine-tuning (the CLI always adds it)."""
    return [sys.executable, "-m", "tinylora.cli", "sweep", "--task", "domain", "--ranks", ranks,
            "--steps", str(steps), "--out", str(out), "--no-progress", "--workers", str(workers)]


def wait_for(condition, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")


# ---- the lock ------------------------------------------------------------------------------------
def test_a_sweep_on_a_folder_another_process_holds_exits_at_once_naming_it_and_the_pid(tmp_path):
    """Before: a second sweep on the same --out ran every run again beside the first."""
    with folder_lock(tmp_path):  # this test process plays the first sweep
        done = subprocess.run(sweep_command(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"tinylora sweep: error: {str(tmp_path)!r} is in use by another sweep (pid {os.getpid()}); wait for "
        "it to finish, or use another --out"]
    assert not (tmp_path / SWEEP_NAME).exists() and not (tmp_path / RESULTS_NAME).exists()


def test_the_lock_is_refused_within_one_process_too_and_freed_on_exit(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(SweepFolderBusy, match=r"is in use by another sweep \(pid \d+\)"):
            with folder_lock(tmp_path):
                pass
    with folder_lock(tmp_path):  # released: free again
        pass


@pytest.mark.slow
def test_two_concurrent_sweeps_on_one_folder_the_second_is_refused_and_no_finished_run_is_lost(tmp_path):
    """Before: both ran; the slower one's rewrite of results.jsonl dropped the runs the other had finished.

    The first sweep (7 runs of 80 steps, so still running) is stopped with Ctrl-C once the second is
    refused. Ctrl-C must stop it even when it lands in a graph node's ``__del__``, where Python would
    print "Exception ignored" and drop it (the sweep then ran on to exit 0)."""
    command = sweep_command(tmp_path, ranks="1,2,3,4,5,6", steps=80)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: len(read_results(tmp_path)) >= 1)      # the first holds the lock and has a run
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    before = read_results(tmp_path)
    first.send_signal(signal.SIGINT)
    first.wait(timeout=60)
    assert second.returncode == 2 and "is in use by another sweep" in second.stderr
    stderr = first.stderr.read()
    assert first.returncode == 130, stderr
    assert "Exception ignored" not in stderr
    runs = read_results(tmp_path)
    assert runs[:len(before)] == before                              # nothing the first finished is lost
    assert len(runs) == len({r["run_id"] for r in runs}) >= 1        # and nothing ran twice


# ---- appends, damaged lines, resume ---------------------------------------------------------------
def test_an_append_after_a_line_cut_short_keeps_the_cut_line_apart_and_the_new_run_whole(tmp_path):
    """A kill in the middle of a write leaves a line without its newline; the next run must not join it."""
    (tmp_path / RESULTS_NAME).write_bytes(b'{"task": "domain", "method": "lora", "rank": 1}\n{"task": "dom')
    append_result(tmp_path, {"task": "domain", "method": "lora", "rank": 2})
    with pytest.warns(UserWarning, match=r"results.jsonl:2: skipped a line \(not valid JSON"):
        assert [r["rank"] for r in read_results(tmp_path)] == [1, 2]


def instant_run(spec, progress=False):
    """tasks.run without the training: what resume does with a line does not depend on its numbers."""
    spec = RunSpec.from_dict(spec) if isinstance(spec, dict) else spec
    return {"run_id": spec.run_id, "task": spec.task, "method": spec.method, "rank": spec.rank,
            "metrics": {"val_loss": 1.0 + spec.rank, "base_val_loss": 1.75}}


@pytest.mark.parametrize("bad, why", [
    (b"[1, 2]", "a JSON list, not an object"),
    (b'{"task": "domain", "method": "lora", "rank": 1}', "no run_id"),
    (b'{"task": "domain", "method": "lo\xff"}', "not UTF-8 text: byte 0xff at column 33"),
])
def test_one_bad_line_is_set_aside_with_a_warning_naming_it_and_the_sweep_resumes(monkeypatch, tmp_path, bad,
                                                                                     why):
    """Before: a JSON list, an object with no run_id or one non-UTF-8 byte blocked the resume."""
    monkeypatch.setattr(sweep, "run", instant_run)
    first = run_sweep(SweepConfig(**TINY), str(tmp_path), progress=False, log=lambda *_: None)
    path = tmp_path / RESULTS_NAME
    path.write_bytes(json.dumps(first[0]).encode() + b"\n" + bad + b"\n")   # the second run's line is gone
    messages = []
    with pytest.warns(UserWarning, match=rf"results.jsonl:2: skipped a line \({why}"):
        resumed = run_sweep(SweepConfig(**TINY), str(tmp_path), progress=False, log=messages.append)
    assert "1 already done, 1 to run" in messages[0]
    assert [r["metrics"] for r in resumed] == [r["metrics"] for r in first]
    assert (tmp_path / DAMAGED_NAME).read_bytes() == bad + b"\n"            # kept, not destroyed
    assert len(read_results(tmp_path)) == 2


def test_a_damaged_sweep_json_is_an_error_naming_the_file(tmp_path):
    """Before: a raw json.JSONDecodeError without the file's name."""
    (tmp_path / SWEEP_NAME).write_text('{"tasks": ["domain"')
    with pytest.raises(ValueError, match=rf"{SWEEP_NAME} is damaged \(Expecting .*delete it and re-run"):
        run_sweep(SweepConfig(**TINY), str(tmp_path), progress=False)


def test_repeated_ranks_seeds_and_targets_collapse_into_one_run_each_with_a_note():
    """Before: --ranks 1,1 ran and recorded the same run twice."""
    config = SweepConfig(tasks=("domain",), ranks=(1, 1, 2), seeds=(0, 0), targets=("q_proj", "q_proj"),
                         include_full=False)
    assert (config.ranks, config.seeds, config.targets) == ((1, 2), (0,), ("q_proj",))
    assert len(config.runs()) == 2
    assert config.notes[0] == "note: ranks [1, 1, 2] repeat 1; each runs once: [1, 2]"
    assert len(config.notes) == 3
    assert config == SweepConfig(tasks=("domain",), ranks=(1, 2), targets=("q_proj",), include_full=False)


# ---- Ctrl-C and kill -9 -------------------------------------------------------------------------------
@needs_proc
@pytest.mark.slow
def test_ctrl_c_of_a_two_worker_sweep_prints_one_line_saying_what_was_kept_exits_130_and_stops_the_pool(
        tmp_path):
    """Before: Ctrl-C printed a 41-line traceback (and one more per worker)."""
    command = sweep_command(tmp_path, ranks="1,2,3,4", steps=20, workers=2)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    assert wait_for(lambda: len(read_results(tmp_path)) >= 1)
    children = children_of(process.pid)
    os.killpg(process.pid, signal.SIGINT)        # as a terminal's Ctrl-C: the sweep and its workers
    _, stderr = process.communicate(timeout=60)
    kept = len(read_results(tmp_path))
    assert wait_for(lambda: not any(map(alive, children)), timeout=10), [c for c in children if alive(c)]
    assert process.returncode == 130
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"tinylora sweep: interrupted; {kept} finished run{'s' * (kept != 1)} kept in "
        f"{tmp_path / RESULTS_NAME}; run the same command to resume"]


ORPHAN_SCRIPT = textwrap.dedent("""
    import concurrent.futures as cf, multiprocessing, sys, time
    from tinylora.experiments.workers import make_process_pool
    if __name__ == "__main__":
        if sys.argv[1] == "plain":   # the pool the sweep used before
            pool = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        else:
            pool = make_process_pool(2)
        futures = [pool.submit(time.sleep, 60) for _ in range(2)]
        print("ready", flush=True)
        time.sleep(120)
""")


def pool_workers_after_kill(tmp_path, kind: str) -> list[int]:
    """Start a 2-process pool in a child, kill -9 the child, return the pool workers still alive after 3 s."""
    script = tmp_path / "pool.py"
    script.write_text(ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), kind], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    assert wait_for(lambda: len(children_of(parent.pid)) >= 3, timeout=60)  # the resource tracker + 2 workers
    workers = [pid for pid in children_of(parent.pid) if "spawn_main" in command_line(pid)]
    parent.kill()
    parent.wait()
    wait_for(lambda: not any(map(alive, workers)), timeout=3)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


@needs_proc
def test_workers_of_a_plain_process_pool_outlive_a_kill_9_of_their_parent(tmp_path):
    """The old failure, reproduced: the standard pool's workers stay alive (here until their sleep ends)."""
    assert len(pool_workers_after_kill(tmp_path, "plain")) == 2


@needs_proc
def test_workers_of_the_sweeps_pool_die_with_their_parent_after_a_kill_9(tmp_path):
    assert pool_workers_after_kill(tmp_path, "sweep") == []


@needs_proc
@pytest.mark.slow
def test_kill_9_of_a_two_worker_sweep_leaves_no_process_and_the_same_command_resumes(tmp_path):
    """Before: the pool's workers stayed alive after kill -9 of the sweep."""
    command = sweep_command(tmp_path, ranks="1,2,3,4", steps=30, workers=2)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: len(read_results(tmp_path)) >= 1)
    children = children_of(process.pid)          # 2 workers and multiprocessing's resource tracker
    assert sum("spawn_main" in command_line(pid) for pid in children) == 2
    process.kill()
    process.wait()
    assert wait_for(lambda: not any(map(alive, children)), timeout=10), [c for c in children if alive(c)]
    finished = read_results(tmp_path)            # every line whole: no warning
    assert 1 <= len(finished) < 5
    with folder_lock(tmp_path):                  # the kill released the lock, so the command can resume
        pass
