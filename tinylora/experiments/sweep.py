"""The rank sweep: expand a config into runs, execute them on any Executor, store, resume.

Everything is checked before the first write: the config, the ranks and targets against the base
model, the executor, and that ``DIR`` can be written. Then the sweep takes an exclusive lock on
``DIR/sweep.lock`` (``fcntl.flock``, held until it ends), so a second sweep on the folder stops at
once naming the holder's pid. Results go to ``DIR/results.jsonl``, one JSON line appended and
fsynced per finished run (``results.append_result``), so killing the sweep loses at most the runs
in flight. Re-running the same command skips finished runs (resume). ``DIR/sweep.json`` records
the sweep's config; a different sweep in a folder that holds finished runs is refused.

A run whose loss or metrics become NaN or inf, or explode (``results.divergence``), is recorded
with ``"status": "diverged"`` and a message giving the step and the likely cause; it is not a
result, and resuming does not repeat it (the same seed would diverge the same way).

Executors: serial (default), a local process pool (``workers > 1``), or a Dask cluster
(``scheduler="tcp://host:port"``, via ``Client.get_executor()``). Pool workers ignore Ctrl-C (the
sweep stops them) and die with the sweep even after a kill -9 of it (``_die_with_parent``). Each
run is seeded and pins its BLAS thread count (``tasks.RUN_BLAS_THREADS``), so on one machine the
numbers are bit-identical whichever executor ran them; across machines with other BLAS kernels
they agree to about 1e-6.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import math
import os
import re
import socket
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from .._validate import check_bool, check_choice, check_int, check_path, check_real, is_int
from ..data import CORPORA
from ..io import atomic_writer
from ..train import progress_bar
from .folder import SweepFolderBusy, check_writable_folder, folder_lock
from .llm_task import LLM_MODELS, LLM_TASKS, llm_runs
from .results import (
    DAMAGED_NAME,
    RESULTS_NAME,
    SUMMARY_NAME,
    SWEEP_NAME,
    TASKS,
    append_result,
    divergence,
    read_results,
    set_aside_damaged,
)
from .tasks import BUDGET_CONFIGS, TASK_DEFAULTS, RunSpec, run, spec_from_dict
from .workers import make_process_pool, stop_executor

__all__ = ["SweepConfig", "run_sweep", "read_results", "validate_against_model", "make_executor",
           "SerialExecutor", "SweepFolderBusy", "run_checked", "DEFAULT_RANKS", "DEFAULT_TASKS",
           "RESULTS_NAME", "SWEEP_NAME", "SUMMARY_NAME", "PLANTED_BASIS"]

DEFAULT_RANKS = (1, 2, 4, 8, 16, 32)
DEFAULT_TASKS = ("planted", "domain")
# The planted update's input directions are drawn from the top 16 principal directions of the
# layer's inputs (tasks._plant), so k* can be at most 16.
PLANTED_BASIS = 16


def _collapse(name: str, values: tuple, notes: list) -> tuple:
    """``values`` without repeats (first occurrence kept); a note in ``notes`` when any were dropped."""
    unique = tuple(dict.fromkeys(values))
    if len(unique) < len(values):
        repeated = sorted({v for v in values if values.count(v) > 1}, key=values.index)
        notes.append(f"note: {name} {list(values)} repeat {', '.join(map(str, repeated))}; "
                     f"each runs once: {list(unique)}")
    return unique


@dataclass(frozen=True)
class SweepConfig:
    """A whole sweep. ``SweepConfig.quick()`` is the ≤ 30 s version used by tests and notebooks."""

    tasks: tuple = DEFAULT_TASKS
    ranks: tuple = DEFAULT_RANKS
    targets: tuple = ("q_proj", "v_proj")
    seeds: tuple = (0,)
    steps: int | None = None          # None: each task's default (tasks.TASK_DEFAULTS)
    lr: float | None = None           # LoRA learning rate; None: the task's default
    full_lr: float | None = None      # full fine-tuning learning rate; None: the task's default
    alpha: float = 16.0
    rslora: bool = False
    include_full: bool = True
    corpus: str = "recipes"
    k_star: int = 4
    batch_size: int = 16
    model: str | None = None          # a real model (llm_task.LLM_MODELS) for its tasks; None: the toy base

    def __post_init__(self):
        notes = []
        for name in ("tasks", "ranks", "targets", "seeds"):  # --ranks 1,1 runs rank 1 once
            object.__setattr__(self, name, _collapse(name, tuple(getattr(self, name)), notes))
        object.__setattr__(self, "_notes", tuple(notes))
        if self.model is not None:
            check_choice("model", self.model, LLM_MODELS, where="SweepConfig")
        known = LLM_TASKS if self.model else TASKS
        unknown = [t for t in self.tasks if t not in known]
        if unknown or not self.tasks:
            which = f" of model {self.model!r}" if self.model else ""
            raise ValueError(f"unknown task(s) {unknown or list(self.tasks)}; "
                             f"choose from {list(known)}{which}")
        if not self.ranks or not all(is_int(r) and r > 0 for r in self.ranks):
            raise ValueError(f"ranks must be a non-empty list of positive ints, got {list(self.ranks)}")
        if not self.seeds or not all(is_int(s) for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of ints, got {list(self.seeds)}")
        if any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be >= 0 (random generators take no negative seed), "
                             f"got {list(self.seeds)}")
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError(f"targets must be a non-empty list of module names, got {list(self.targets)}")
        check_choice("corpus", self.corpus, sorted(CORPORA), where="SweepConfig")
        if self.steps is not None:
            check_int("steps", self.steps, low=1, where="SweepConfig")
        check_int("k_star", self.k_star, low=1, high=PLANTED_BASIS, where="SweepConfig")
        check_int("batch_size", self.batch_size, low=1, where="SweepConfig")
        for name in ("lr", "full_lr", "alpha"):
            if getattr(self, name) is not None:
                check_real(name, getattr(self, name), low=0.0, low_inclusive=False, where="SweepConfig")
        for name in ("rslora", "include_full"):
            check_bool(name, getattr(self, name), where="SweepConfig")

    @property
    def notes(self) -> tuple:
        """What ``__post_init__`` changed, in words: repeated ranks, seeds, targets or tasks collapsed."""
        return self._notes

    @classmethod
    def quick(cls, **overrides) -> "SweepConfig":
        return cls(**{"ranks": (1, 4, 8), "steps": 25, **overrides})

    def to_dict(self) -> dict:  # no "model" key for the toy base, so older sweep.json files still match
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {k: v for k, v in d.items() if k != "model" or v is not None}

    def runs(self) -> list[RunSpec]:
        """Every run of the sweep, in a fixed order."""
        if self.model is not None:
            return llm_runs(self)
        specs = []
        for task in self.tasks:
            defaults = TASK_DEFAULTS["planted" if task == "planted" else "domain"]
            lr, full_lr = self.lr or defaults["lr"], self.full_lr or defaults["full_lr"]
            common = dict(task=task, seed=0, steps=self.steps or defaults["steps"], alpha=self.alpha,
                          init=defaults["init"], corpus=self.corpus, k_star=self.k_star,
                          batch_size=self.batch_size)
            if task == "budget":
                variants = [dict(method="lora", rank=r, targets=t, lr=lr) for t, r in BUDGET_CONFIGS]
            elif task == "scaling":
                variants = [dict(method="lora", rank=r, targets=self.targets, lr=lr, rslora=rs)
                            for rs in (False, True) for r in self.ranks]
            else:
                variants = [dict(method="lora", rank=r, targets=self.targets, lr=lr, rslora=self.rslora)
                            for r in self.ranks]
                if self.include_full:
                    variants.append(dict(method="full", rank=None, targets=self.targets, lr=full_lr))
            for seed in self.seeds:
                specs += [RunSpec(**{**common, **v, "seed": seed}) for v in variants]
        return list({spec.run_id: spec for spec in specs}.values())  # e.g. budget ignores --ranks


def validate_against_model(config: SweepConfig) -> None:
    """Check ranks, targets and k* against the base model before any run starts (nothing is written)."""
    from ..lora import LoraConfig, find_targets  # the check apply_lora makes, without changing the model
    from ..pretrained import load_base
    if config.model is not None:
        from ..hub import load_pretrained
        model, _ = load_pretrained(config.model)
        for spec in config.runs():
            targets = "all-linear" if tuple(spec.targets) == ("all-linear",) else spec.targets
            find_targets(model, LoraConfig(r=spec.rank or 1, target_modules=targets))
        return
    model, _ = load_base()
    modules = dict(model.named_modules())
    for spec in config.runs():
        if spec.task == "planted":
            _check_planted(spec, modules)
        if spec.method == "lora":
            targets = "all-linear" if tuple(spec.targets) == ("all-linear",) else spec.targets
            if spec.task == "planted":  # planted runs adapt the planted layers, by exact name
                targets = "|".join(n.replace(".", r"\.") for n in spec.planted_layers)
            find_targets(model, LoraConfig(r=spec.rank, target_modules=targets))


def _check_planted(spec: RunSpec, modules: dict) -> None:
    for name in spec.planted_layers:
        weight = getattr(modules.get(name), "weight", None)
        if weight is None:
            raise ValueError(f"planted layer {name!r} is not a Linear layer of the base model")
        if spec.k_star > min(weight.shape):
            raise ValueError(f"k_star={spec.k_star} is larger than planted layer {name!r} allows "
                             f"(min(out, in) = {min(weight.shape)})")


# ---- the sweep folder ----------------------------------------------------------------------
def _stored_config(path: str) -> dict | None:
    """The config in DIR/sweep.json, None when there is none; a damaged file is a ValueError naming it."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            stored = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        stored = err
    if not isinstance(stored, dict):
        why = stored if isinstance(stored, Exception) else f"a JSON {type(stored).__name__}, not an object"
        raise ValueError(f"{path} is damaged ({why}). It only records which sweep the folder holds: "
                         f"delete it and re-run the sweep's command; results.jsonl is kept and resumed")
    return stored


def _prepare_directory(directory, config: SweepConfig, log=print) -> None:
    """Write DIR/sweep.json, or check that DIR holds this very sweep (resume). Call under the lock.

    A folder whose sweep finished no run (say, one that failed at its first run) is free: its
    sweep.json is replaced by this config.
    """
    path = os.path.join(directory, SWEEP_NAME)
    wanted, existing = config.to_dict(), _stored_config(path)
    if existing == wanted:
        return
    if existing is not None:
        diff = {k: (existing.get(k), v) for k, v in wanted.items() if existing.get(k) != v}
        if read_results(directory):
            raise ValueError(f"{os.fspath(directory)!r} holds results of a different sweep (differences as "
                             f"(stored, requested): {diff}). Use another --out to start fresh, delete the "
                             "folder, or re-run the original command to resume it.")
        log(f"note: {path} described another sweep that finished no run ({diff}); replaced")
    with atomic_writer(path, "w") as f:
        json.dump(wanted, f, indent=2)


# ---- executors ---------------------------------------------------------------------------------
class SerialExecutor(cf.Executor):
    """Runs each task at submit time, in this process (so progress bars can show its steps)."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)
        return future


def _check_scheduler_reachable(address: str, timeout: float = 3.0) -> None:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise ValueError(f"--scheduler must look like tcp://host:port, got {address!r}")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=timeout).close()
    except OSError as err:
        raise ValueError(f"cannot reach the Dask scheduler at {address!r} ({err})") from None


def _check_executor(workers, scheduler) -> None:
    """The executor's settings, checked before anything is written or started."""
    if scheduler:
        _check_scheduler_reachable(scheduler)
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ValueError('--scheduler needs Dask: pip install "tinylora[dist]"') from None
    else:
        check_int("workers", workers, low=1)


def make_executor(workers: int = 1, scheduler: str | None = None):
    """(executor, label, client): serial, a process pool of ``workers``, or a Dask cluster."""
    _check_executor(workers, scheduler)
    if scheduler:
        from distributed import Client
        client = Client(scheduler, timeout="10s")
        return client.get_executor(), f"dask {scheduler}", client
    if workers == 1:
        return SerialExecutor(), "serial", None
    # each run pins its own BLAS thread count (tasks.RUN_BLAS_THREADS), in workers as in serial
    return make_process_pool(workers), f"{workers} processes", None


# ---- one run, diverged or not -------------------------------------------------------------------
def _likely_cause(spec: RunSpec) -> str:
    flag = "--full-lr" if spec.method == "full" else "--lr"
    return f"likely cause: a learning rate too high for this run (lr={spec.lr:g}); try a smaller {flag}"


def _finite_or_none(metrics) -> dict:
    bad = lambda v: isinstance(v, float) and not math.isfinite(v)  # noqa: E731
    return {k: None if bad(v) else v for k, v in (metrics or {}).items()}


def _diverged(spec: RunSpec, step: int | None, why: str, result: dict | None = None) -> dict:
    """The results line of a diverged run: what is known of it, ``status`` and a one-line ``message``."""
    line = dict(result or {}, run_id=spec.run_id, task=spec.task, method=spec.method, rank=spec.rank,
                targets=list(spec.targets), alpha=spec.alpha, rslora=spec.rslora, seed=spec.seed,
                steps=spec.steps, lr=spec.lr, spec=spec.to_dict())
    line["metrics"] = _finite_or_none(line.get("metrics"))
    where = f"at step {step}" if step is not None else "during training"
    return {**line, "status": "diverged", "diverged_step": step,
            "message": f"diverged {where}: {why}; {_likely_cause(spec)}"}


def run_checked(spec_dict: dict, progress: bool = False) -> dict:
    """``tasks.run``; a run that diverges comes back as a ``status: "diverged"`` line (see the module doc)."""
    spec = spec_from_dict(spec_dict)
    try:
        result = run(spec, progress=progress)
    except FloatingPointError as err:  # fit stops at the first non-finite loss, naming the step
        step = getattr(err, "step", None)
        if step is None:
            found = re.search(r"at step (\d+)", str(err))
            step = int(found.group(1)) if found else None
        return _diverged(spec, step, str(err))
    reason = divergence(result)
    if reason is not None:
        return _diverged(spec, spec.steps, f"after the last step, {reason}", result)
    return {**result, "status": "ok"}


# ---- the sweep ------------------------------------------------------------------------------------
def _finished_runs(out, wanted: dict) -> dict:
    """run_id -> results line, for each run of this sweep in DIR/results.jsonl (the first line of a run)."""
    finished = {}
    legacy = {getattr(spec, "legacy_run_id", run_id): run_id for run_id, spec in wanted.items()}
    for line in read_results(out, required=("task", "method", "run_id")):
        run_id = legacy.get(line["run_id"], line["run_id"])  # planted ids before they named their layers
        if run_id in wanted and run_id not in finished:
            finished[run_id] = line
    return finished


def run_sweep(config: SweepConfig, out: str, workers: int = 1, scheduler: str | None = None,
              progress: bool = True, log=print) -> list[dict]:
    """Run every unfinished run of ``config`` into ``out``; return the lines of all its runs, in order.

    Every setting is checked, and ``out`` made and checked writable, before the first write; the
    folder is locked while the sweep runs (SweepFolderBusy if another sweep holds it). Lines of
    diverged runs are included, with ``"status": "diverged"``; ``summary`` leaves them out.
    """
    out = check_path("out", out, where="run_sweep")
    _check_executor(workers, scheduler)
    validate_against_model(config)
    check_writable_folder(out, "the sweep folder")
    with folder_lock(out):
        _prepare_directory(out, config, log)
        return _run_locked(config, out, workers, scheduler, progress, log)


def _run_locked(config: SweepConfig, out, workers, scheduler, progress, log) -> list[dict]:
    wanted = {spec.run_id: spec for spec in config.runs()}
    moved = set_aside_damaged(out, required=("task", "method", "run_id"))
    finished = _finished_runs(out, wanted)
    todo = [spec for run_id, spec in wanted.items() if run_id not in finished]
    diverged = sum(line.get("status") == "diverged" for line in finished.values())
    earlier = f" ({diverged} of them diverged)" if diverged else ""
    executor, label, client = make_executor(workers, scheduler)
    log(f"sweep: {len(wanted)} runs, {len(finished)} already done{earlier}, {len(todo)} to run ({label}) "
        f"-> {out}")
    if moved:
        log(f"note: {moved} damaged line(s) of {RESULTS_NAME} moved to {DAMAGED_NAME}; their runs are redone")
    for note in config.notes:
        log(note)
    bar = progress_bar(len(wanted), "runs", progress)
    bar.update(len(finished))
    start = time.perf_counter()

    def record(line):
        append_result(out, line)
        finished[line["run_id"]] = line
        if line["status"] == "diverged":
            (bar.write if progress else log)(f"run {line['run_id']} {line['message']}")
        bar.update(1)

    stopped = True
    try:
        if isinstance(executor, SerialExecutor):  # one at a time, each run's own progress bar shown
            for spec in todo:
                record(executor.submit(run_checked, spec.to_dict(), progress).result())
        else:
            futures = [executor.submit(run_checked, spec.to_dict()) for spec in todo]
            for future in cf.as_completed(futures):
                record(future.result())
        stopped = False
    finally:  # Ctrl-C or a failed run: stop the other runs now; what finished is on disk already
        bar.close()
        stop_executor(executor, now=stopped)
        if client is not None:
            client.close()
    log(f"sweep finished in {time.perf_counter() - start:.1f} s")
    return [finished[run_id] for run_id in wanted if run_id in finished]
