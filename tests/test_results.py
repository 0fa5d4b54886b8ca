"""The sweep folder's one reader and writer of results.jsonl, with one rule for damaged lines."""
from __future__ import annotations

import json
import warnings

import pytest

from tinylora.experiments import plots, sweep, tasks
from tinylora.experiments.results import (
    RESULTS_NAME,
    TASKS,
    load_results,
    read_results,
    task_key,
    write_results,
)

RUNS = [{"run_id": f"domain-r{r}", "task": "domain", "method": "lora", "rank": r} for r in (1, 2, 4)]

DAMAGED = {  # line -> the reason the warning gives
    '{"task": "domain", "method": "lo': "not valid JSON",
    "[1, 2]": "a JSON list, not an object",
    '{"method": "lora", "rank": 4}': "no task",
    '{"task": "domain", "method": 3}': "no method",
}


def write_lines(folder, lines):
    (folder / RESULTS_NAME).write_text("\n".join(lines) + "\n")


def test_write_then_read_gives_the_runs_back_in_order_and_leaves_no_temporary_file(tmp_path):
    write_results(tmp_path, RUNS)
    assert read_results(tmp_path) == RUNS
    assert [p.name for p in tmp_path.iterdir()] == [RESULTS_NAME]


def test_a_folder_without_results_reads_as_no_runs_for_the_sweep_and_as_an_error_for_a_report(tmp_path):
    assert read_results(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="no results.jsonl in .*tinylora sweep --out DIR"):
        load_results(tmp_path)


@pytest.mark.parametrize("line", DAMAGED)
def test_a_damaged_line_is_skipped_with_a_warning_naming_its_line_and_why(tmp_path, line):
    write_lines(tmp_path, [json.dumps(RUNS[0]), line, json.dumps(RUNS[1])])
    with pytest.warns(UserWarning, match=rf"results.jsonl:2: skipped a line \({DAMAGED[line]}"):
        assert read_results(tmp_path) == RUNS[:2]


def test_blank_lines_are_ignored_without_a_warning(tmp_path):
    write_lines(tmp_path, ["", json.dumps(RUNS[0]), "   "])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_results(tmp_path) == RUNS[:1]


def test_a_file_of_damaged_lines_only_holds_no_finished_runs(tmp_path):
    write_lines(tmp_path, list(DAMAGED))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="holds no finished runs"):
        load_results(tmp_path)


def test_the_sweep_and_the_figures_read_with_the_same_reader():
    assert sweep.read_results is read_results
    assert plots.load_results is load_results


def test_tasks_sort_in_the_one_task_order_then_by_name():
    assert sorted(["zeta", "scaling", "alpha", "merge-lab", "domain", "planted", "budget"], key=task_key) == [
        *TASKS, "alpha", "zeta"]


def test_a_run_spec_of_an_unknown_task_or_method_is_refused():
    with pytest.raises(ValueError, match=r"RunSpec: task must be one of \['planted', 'domain', 'budget', "):
        tasks.RunSpec(task="poetry", method="lora", rank=1)
    with pytest.raises(ValueError, match="RunSpec: method must be one of"):
        tasks.RunSpec(task="domain", method="half", rank=1)
