"""The rank sweep: expand a config into runs, execute them on any Executor, store, resume.

Results go to ``DIR/results.jsonl``, one JSON line per finished run, and the file is
rewritten atomically (temporary file + rename, ``results.write_results``) after every run, so
killing the sweep loses at most the runs in flight. Re-running the same command skips finished runs (resume).
``DIR/sweep.json`` records the sweep's config; a different sweep in the same folder is refused.

Executors: serial (default), a local process pool (``workers > 1``), or a Dask cluster
(``scheduler="tcp://host:port"``, via ``Client.get_executor()``). Each run is seeded and pins
its BLAS thread count (``tasks.RUN_BLAS_THREADS``), so on one machine the numbers are
bit-identical whichever executor ran them; across machines with other BLAS kernels they agree
to about 1e-6.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from .._validate import check_bool, check_int, check_real, is_int
from ..io import atomic_writer
from ..train import progress_bar
from .results import RESULTS_NAME, SUMMARY_NAME, SWEEP_NAME, TASKS, read_results, write_results
from .tasks import BUDGET_CONFIGS, TASK_DEFAULTS, RunSpec, run

__all__ = ["SweepConfig", "run_sweep", "read_results", "validate_against_model", "make_executor",
           "SerialExecutor", "DEFAULT_RANKS", "DEFAULT_TASKS", "RESULTS_NAME", "SWEEP_NAME", "SUMMARY_NAME"]

DEFAULT_RANKS = (1, 2, 4, 8, 16, 32)
DEFAULT_TASKS = ("planted", "domain")


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

    def __post_init__(self):
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(f"unknown task(s) {unknown or list(self.tasks)}; choose from {list(TASKS)}")
        if not self.ranks or not all(is_int(r) and r > 0 for r in self.ranks):
            raise ValueError(f"ranks must be a non-empty list of positive ints, got {list(self.ranks)}")
        if not self.seeds or not all(is_int(s) for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of ints, got {list(self.seeds)}")
        if self.steps is not None:
            check_int("steps", self.steps, low=1, where="SweepConfig")
        check_int("k_star", self.k_star, low=1, where="SweepConfig")
        check_int("batch_size", self.batch_size, low=1, where="SweepConfig")
        for name in ("lr", "full_lr", "alpha"):
            if getattr(self, name) is not None:
                check_real(name, getattr(self, name), low=0.0, low_inclusive=False, where="SweepConfig")
        for name in ("rslora", "include_full"):
            check_bool(name, getattr(self, name), where="SweepConfig")

    @classmethod
    def quick(cls, **overrides) -> "SweepConfig":
        return cls(**{"ranks": (1, 4, 8), "steps": 25, **overrides})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def runs(self) -> list[RunSpec]:
        """Every run of the sweep, in a fixed order."""
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
        return specs


def validate_against_model(config: SweepConfig) -> None:
    """Check ranks and targets against the base model before any run starts."""
    from ..lora import LoraConfig, find_targets  # the check apply_lora makes, without changing the model
    from ..pretrained import load_base
    model, _ = load_base()
    for spec in config.runs():
        if spec.method == "lora" and spec.task != "planted":
            targets = "all-linear" if tuple(spec.targets) == ("all-linear",) else spec.targets
            find_targets(model, LoraConfig(r=spec.rank, target_modules=targets))


# ---- the sweep folder ----------------------------------------------------------------------
def _prepare_directory(directory, config: SweepConfig) -> None:
    """Create DIR with its sweep.json, or check that DIR holds this very sweep (resume)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SWEEP_NAME)
    wanted = config.to_dict()
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
        if existing != wanted:
            diff = {k: (existing.get(k), v) for k, v in wanted.items() if existing.get(k) != v}
            raise ValueError(f"{os.fspath(directory)!r} holds results of a different sweep (differences as "
                             f"(stored, requested): {diff}). Use another --out to start fresh, delete the "
                             "folder, or re-run the original command to resume it.")
        return
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


def make_executor(workers: int = 1, scheduler: str | None = None):
    """(executor, label, client): serial, a process pool of ``workers``, or a Dask cluster."""
    if scheduler:
        _check_scheduler_reachable(scheduler)
        try:
            from distributed import Client
        except ImportError:
            raise ValueError('--scheduler needs Dask: pip install "tinylora[dist]"') from None
        client = Client(scheduler, timeout="10s")
        return client.get_executor(), f"dask {scheduler}", client
    if check_int("workers", workers, low=1) == 1:
        return SerialExecutor(), "serial", None
    import multiprocessing
    # each run pins its own BLAS thread count (tasks.RUN_BLAS_THREADS), in workers as in serial
    return (cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")),
            f"{workers} processes", None)


def _shutdown(executor) -> None:
    """Stop an executor without waiting; cancel queued runs where the executor can."""
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except TypeError:  # Dask's ClientExecutor has no cancel_futures
        executor.shutdown(wait=False)


def _run_quietly(spec_dict: dict) -> dict:
    return run(spec_dict, progress=False)


def run_sweep(config: SweepConfig, out: str, workers: int = 1, scheduler: str | None = None,
              progress: bool = True, log=print) -> list[dict]:
    """Run every unfinished run of ``config`` into ``out``; return all results of the sweep."""
    validate_against_model(config)
    _prepare_directory(out, config)
    results = read_results(out)
    done = {r.get("run_id") for r in results}
    todo = [s for s in config.runs() if s.run_id not in done]
    executor, label, client = make_executor(workers, scheduler)
    log(f"sweep: {len(config.runs())} runs, {len(done)} already done, {len(todo)} to run ({label}) -> {out}")
    bar = progress_bar(len(config.runs()), "runs", progress)
    bar.update(len(done))
    start = time.perf_counter()

    def record(result):
        results.append(result)
        write_results(out, results)
        bar.update(1)

    try:
        if isinstance(executor, SerialExecutor):  # one at a time, each run's own progress bar shown
            for spec in todo:
                record(executor.submit(run, spec.to_dict(), progress).result())
        else:
            futures = [executor.submit(_run_quietly, spec.to_dict()) for spec in todo]
            for future in cf.as_completed(futures):
                record(future.result())
    finally:
        bar.close()
        _shutdown(executor)
        if client is not None:
            client.close()
    log(f"sweep finished in {time.perf_counter() - start:.1f} s")
    wanted = {s.run_id for s in config.runs()}
    return [r for r in results if r.get("run_id") in wanted]
