"""The sweep's tasks: one run = one (task, method, rank, targets, seed) fine-tuning of the base GPT.

Every run starts from the same shipped base model (frozen W0) and returns one JSON-ready dict,
the line that the sweep appends to ``results.jsonl``.

- ``planted``: a teacher is the base model with a known rank-k* update ΔW* added to chosen
  weights; the student (base + LoRA of rank r on those weights) learns to match the teacher's
  logits. r < k* cannot express ΔW*, r >= k* can: the error curve has a knee at k*.
- ``domain``: fine-tune the base to the ``recipes`` cards, whose content it read in the
  ``cookbook`` layout (or to ``arithmetic``, which also reports exact-match accuracy);
  metric = held-out loss.
- ``budget``: the domain task at a fixed adapter size, spent on different matrices
  ({q} r=8, {v} r=8, {q,v} r=4, {q,k,v,o} r=2; LoRA paper, Table 5).
- ``scaling``: the domain task across ranks with α/r against rsLoRA's α/√r.
- ``merge-lab``: an adapter for recipe cards and one for sums, combined by every combination type of
  ``add_weighted_adapter``, with held-out loss on both tasks; run by ``merge_lab``.
- ``cards``: a real model (SmolLM2-135M-Instruct) learns a house style; run by ``llm_task``
  (``spec_from_dict`` and ``run`` hand its specs there).

The domain-like tasks also measure forgetting: ``forget_loss`` is the held-out loss on the fables
the base was pre-trained on (``base_forget_loss`` before fine-tuning).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from .. import __version__
from .._validate import check_choice
from ..data import (
    CharTokenizer,
    get_batch,
    load_corpus,
    make_arithmetic_problems,
    score_arithmetic,
    train_val_split,
)
from ..io import save_model
from ..lora import (
    ADAPTER_WEIGHTS_NAME,
    LoraConfig,
    apply_lora,
    count_parameters,
    get_delta_weights,
    lora_layers,
    save_adapter,
)
from ..models.gpt import GPT
from ..pretrained import load_base
from ..tensor import Tensor, no_grad
from ..train import estimate_loss, fit
from .analysis import (
    amplification_factor,
    amplification_table,
    delta_weight_similarity,
    random_baseline_spectrum,
)
from .llm_task import LLM_TASKS, LlmRunSpec
from .llm_task import run as run_llm
from .merge_lab import MERGE_CORPORA, run_merge_lab
from .results import TASKS

# Per-task defaults: steps, the LoRA learning rate and the full fine-tuning learning rate.
# (The domain task uses PEFT's default kaiming-uniform A: with N(0, 1/r) the r = 1 adapter
# starts with steps 64x larger than r = 8 and overshoots.)
TASK_DEFAULTS = {"planted": dict(steps=150, lr=3e-2, full_lr=1e-2, init="gaussian"),
                 "domain": dict(steps=100, lr=2e-2, full_lr=1e-3, init="kaiming")}
EVAL_BATCHES = 6
# Every run, whichever executor runs it, uses this many BLAS threads: a GEMM's summation order
# depends on the thread count, so pinning it makes one machine's numbers bit-identical between
# the serial, process-pool and Dask executors. (Machines with other BLAS kernels agree to ~1e-6.)
RUN_BLAS_THREADS = 1
# LoRA paper, Table 5: the same number of adapter parameters spent on different matrices.
BUDGET_CONFIGS = ((("q_proj",), 8), (("v_proj",), 8), (("q_proj", "v_proj"), 4),
                  (("q_proj", "k_proj", "v_proj", "o_proj"), 2))


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's numbers (the executor does not)."""

    task: str
    method: str                      # "lora" or "full"
    rank: int | None                 # None for full fine-tuning
    targets: tuple = ("q_proj", "v_proj")
    alpha: float = 16.0
    rslora: bool = False
    seed: int = 0
    steps: int = 120
    lr: float = 5e-3
    batch_size: int = 16
    block_size: int = 64
    init: str = "gaussian"           # LoRA init of A: "gaussian" (N(0, 1/r)) or "kaiming" (U(±1/√in))
    corpus: str = "recipes"          # domain-like tasks
    k_star: int = 4                  # planted task
    planted_layers: tuple = ("blocks.3.attn.v_proj",)
    planted_scale: float = 1.0       # each planted singular value, relative to ‖W0‖₂

    def __post_init__(self):
        check_choice("task", self.task, TASKS, where="RunSpec")
        check_choice("method", self.method, ("lora", "full"), where="RunSpec")

    @property
    def adapted(self) -> tuple:
        """The layers a run trains: the planted layers in the planted task, else ``targets``."""
        return self.planted_layers if self.task == "planted" else self.targets

    @property
    def run_id(self) -> str:
        """``task-rank-layers-seed-digest``; the digest of every field is what identifies the run."""
        return self._id(self.adapted)

    @property
    def legacy_run_id(self) -> str:
        """The id before it named the planted layers (it said ``targets``); resume accepts it too."""
        return self._id(self.targets)

    def _id(self, layers) -> str:
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        rank = "full" if self.method == "full" else f"r{self.rank}"
        scale = "-rs" if self.rslora else ""
        return f"{self.task}-{rank}{scale}-{'+'.join(layers)}-s{self.seed}-{digest}"

    def to_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets), "planted_layers": list(self.planted_layers)}

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(**{**d, "targets": tuple(d["targets"]), "planted_layers": tuple(d["planted_layers"])})


def spec_from_dict(d: dict) -> RunSpec | LlmRunSpec:
    """The spec a results line's ``spec`` describes: a real-model task's ``LlmRunSpec``, else ``RunSpec``."""
    return (LlmRunSpec if d.get("task") in LLM_TASKS else RunSpec).from_dict(d)


def run(spec: RunSpec | LlmRunSpec | dict, progress: bool = False) -> dict:
    """Run one configuration and return its results line (see ``docs/analysis.md`` for the schema)."""
    spec = spec_from_dict(spec) if isinstance(spec, dict) else spec
    if isinstance(spec, LlmRunSpec):
        return run_llm(spec, progress, blas_threads=RUN_BLAS_THREADS)
    start = time.perf_counter()
    with threadpool_limits(limits=RUN_BLAS_THREADS, user_api="blas"):
        runner = {"planted": _run_planted, "merge-lab": _run_merge_lab}.get(spec.task, _run_domain)
        result = runner(spec, progress)
    trainable, total = result.pop("_counts")
    targets = spec.adapted
    result.update(blas_threads=RUN_BLAS_THREADS, run_id=spec.run_id, task=spec.task, method=spec.method,
                  rank=spec.rank, targets=list(targets), alpha=spec.alpha, rslora=spec.rslora, seed=spec.seed,
                  steps=spec.steps, lr=spec.lr, spec=spec.to_dict(), trainable_params=trainable,
                  total_params=total, trainable_fraction=trainable / total,
                  seconds=round(time.perf_counter() - start, 3), versions=versions())
    return result


def versions() -> dict:
    return {"tinylora": __version__, "numpy": np.__version__, "python": platform.python_version()}


# ---- shared pieces ------------------------------------------------------------------------------
def _lora_config(spec: RunSpec, targets) -> LoraConfig:
    targets = "all-linear" if tuple(targets) == ("all-linear",) else targets
    return LoraConfig(r=spec.rank, lora_alpha=spec.alpha, target_modules=targets, use_rslora=spec.rslora,
                      init_lora_weights=spec.init, seed=spec.seed)


def _make_trainable(model, spec: RunSpec, full_names=None):
    """LoRA on the targets, or (full) unfreeze every parameter / only ``full_names``."""
    if spec.method == "lora":
        targets = "|".join(map(_regex_escape, full_names)) if full_names else spec.targets
        return apply_lora(model, _lora_config(spec, targets))
    for name, p in model.named_parameters():
        p.requires_grad = full_names is None or name.rsplit(".", 1)[0] in full_names
    return model


def _regex_escape(name: str) -> str:
    return name.replace(".", r"\.")


def _weights(model, names) -> dict:
    """Host copies of the (out, in) weights of the named Linear layers (LoRA-wrapped or not)."""
    out = {}
    modules = dict(model.named_modules())
    for n in names:
        layer = modules[n]
        layer = getattr(layer, "base_layer", layer)
        out[n] = layer.weight.numpy()  # a host copy
    return out


def _adapter_bytes(model) -> int:
    with tempfile.TemporaryDirectory() as folder:
        save_adapter(model, folder)
        return os.path.getsize(os.path.join(folder, ADAPTER_WEIGHTS_NAME))


_CHECKPOINT_BYTES: dict = {}


def _checkpoint_bytes(model) -> int:
    """The size of a full checkpoint of ``model``'s architecture: the base model alone, never its adapters."""
    key = model.config
    if key not in _CHECKPOINT_BYTES:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.npz")
            save_model(GPT(key, seed=0), path)
            _CHECKPOINT_BYTES[key] = os.path.getsize(path)
    return _CHECKPOINT_BYTES[key]


def _layer_names(model, suffixes) -> list[str]:
    if tuple(suffixes) == ("all-linear",):
        return [n for n, m in model.named_modules()
                if hasattr(m, "in_features") and not n.endswith("lm_head")]
    return [n for n, m in model.named_modules() if hasattr(m, "in_features") and n.split(".")[-1] in suffixes]


def _analysis(model, spec: RunSpec, W0: dict) -> dict:
    """Spectra of full-FT ΔW (with a random baseline); for LoRA, A matrices, amplification, Table 7's three
    projections and Fig. 8's φ between ΔW's and W0's top output directions."""
    if spec.method == "full":
        W1 = _weights(model, list(W0))
        spectra, random = {}, {}
        for i, (n, w0) in enumerate(W0.items()):
            delta = W1[n] - w0
            spectra[n] = np.linalg.svd(delta, compute_uv=False).tolist()  # host-ok
            norm = float(np.linalg.norm(delta))  # host-ok
            random[n] = random_baseline_spectrum(delta.shape, norm, seed=i).tolist()
        return {"delta_spectra": spectra, "random_spectra": random}
    deltas = get_delta_weights(model)
    last = sorted(deltas)[-2:]  # the two deepest adapted layers, e.g. the last block's q and v
    adapter_A = {n: layer.adapters[layer.active_adapter].lora_A.numpy().round(6).tolist()
                 for n, layer in lora_layers(model) if n in last}
    amplification, table7, similarity = {}, {}, {}
    for n in last:
        r = min(spec.rank, *deltas[n].shape)
        factor, random_factor, delta_norm, projected = amplification_factor(deltas[n], W0[n], r)
        amplification[n] = {"factor": factor, "random_factor": random_factor, "delta_norm": delta_norm,
                            "projected_norm": projected}
        table7[n] = amplification_table(deltas[n], W0[n], r)._asdict()          # LoRA paper, Table 7
        similarity[n] = delta_weight_similarity(deltas[n], W0[n], r).round(6).tolist()  # Fig. 8
    return {"adapter_A": adapter_A, "amplification": amplification, "table7": table7,
            "delta_weight_similarity": similarity}


def _run_merge_lab(spec: RunSpec, progress: bool) -> dict:
    splits = {c: domain_splits(c) for c in MERGE_CORPORA}
    config = _lora_config(spec, spec.targets) if spec.method == "lora" else None
    result, model = run_merge_lab(spec, splits, config, EVAL_BATCHES, progress)
    return {**result, "full_checkpoint_bytes": _checkpoint_bytes(model)}


# ---- the domain-shift task (also budget and scaling) ------------------------------------------
def domain_splits(corpus: str, n_chars: int = 60_000):
    """Token ids of a target corpus (fixed data seed 0, so every run sees the same text)."""
    return train_val_split(CharTokenizer().encode(load_corpus(corpus, n_chars=n_chars, seed=0)), 0.1)


def fables_held_out(n_chars: int = 60_000):
    """Token ids of held-out fables (the base's pre-training text): what the forgetting measure reads."""
    return train_val_split(CharTokenizer().encode(load_corpus("fables", n_chars=n_chars, seed=0)), 0.1)[1]


def _run_domain(spec: RunSpec, progress: bool) -> dict:
    model, tokenizer = load_base()
    train_ids, val_ids = domain_splits(spec.corpus)
    fables = fables_held_out()
    held_out = lambda ids: estimate_loss(model, ids, batch_size=spec.batch_size,  # noqa: E731
                                         max_batches=EVAL_BATCHES, block_size=spec.block_size)
    base_val, base_forget = held_out(val_ids), held_out(fables)
    W0 = _weights(model, _layer_names(model, spec.targets))
    _make_trainable(model, spec)
    history = fit(model, train_ids, steps=spec.steps, batch_size=spec.batch_size, block_size=spec.block_size,
                  lr=spec.lr, warmup_steps=max(1, spec.steps // 10), seed=spec.seed, progress=progress,
                  desc=f"{spec.task} {'full' if spec.method == 'full' else f'r={spec.rank}'}")
    metrics = {"val_loss": held_out(val_ids), "base_val_loss": base_val, "accuracy": None,
               "forget_loss": held_out(fables), "base_forget_loss": base_forget}
    if spec.corpus == "arithmetic":
        metrics["accuracy"] = arithmetic_accuracy(model, tokenizer)
    return {"metrics": metrics, "curve": {"step": history["step"], "train_loss": history["train_loss"]},
            "adapter_bytes": _adapter_bytes(model) if spec.method == "lora" else None,
            "full_checkpoint_bytes": _checkpoint_bytes(model), "planted": None,
            "analysis": _analysis(model, spec, W0), "_counts": count_parameters(model)}


def arithmetic_accuracy(model, tokenizer, n: int = 100, seed: int = 0) -> float:
    """Exact-match accuracy of greedy answers on held-out sums such as ``17+25=``."""
    problems = make_arithmetic_problems(n, seed=seed, split="test")
    completions = []
    for prompt, _ in problems:
        ids = model.generate(tokenizer.encode("\n" + prompt)[None, :], 4, temperature=0)
        completions.append((prompt, tokenizer.decode(ids[0, len(prompt) + 1:])))
    return score_arithmetic(completions)


# ---- the planted-rank task ------------------------------------------------------------------
def planted_update(shape, k_star: int, strength: float, seed: int, input_basis=None):
    """ΔW* (out, in) of rank exactly k*: strength · U Vᵀ with random orthonormal U (out, k*), V (in, k*).

    With ``input_basis`` (in, m), V is drawn inside that subspace (the directions the layer's
    inputs actually use), so every planted direction visibly changes the output.
    """
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((shape[0], k_star)))  # host-ok: building a target on the host
    if input_basis is None:
        V, _ = np.linalg.qr(rng.standard_normal((shape[1], k_star)))  # host-ok
    else:
        mix, _ = np.linalg.qr(rng.standard_normal((input_basis.shape[1], k_star)))  # host-ok
        V = input_basis @ mix                                                      # (in, k*)
    return strength * (U @ V.T)


def _layer_inputs(model, name: str, x) -> np.ndarray:
    """The rows (N, in) that Linear ``name`` receives when the model reads ``x``."""
    layer, seen = model.get_submodule(name), []
    original = layer.forward
    layer.forward = lambda h: (seen.append(h.data), original(h))[1]
    try:
        with no_grad():
            model(x)
    finally:
        del layer.forward
    return np.asarray(seen[0]).reshape(-1, seen[0].shape[-1])  # host-ok


def _plant(model, spec: RunSpec, probe) -> dict:
    """Add ΔW* to each planted layer of ``model`` in place; return {layer: ΔW*}.

    Its input directions lie in the top-16 principal directions of the layer's inputs on ``probe``.
    """
    planted = {}
    modules = dict(model.named_modules())
    for i, name in enumerate(spec.planted_layers):
        if name not in modules or not hasattr(modules[name], "weight"):
            raise ValueError(f"planted layer {name!r} is not a Linear layer of the base model")
        W = modules[name].weight
        inputs = _layer_inputs(model, name, probe)
        basis = np.linalg.svd(inputs - inputs.mean(0), full_matrices=False)[2][:16].T  # (in, 16) host-ok
        strength = spec.planted_scale * float(np.linalg.norm(W.numpy(), 2))  # host-ok
        delta = planted_update(W.shape, spec.k_star, strength, seed=1000 + i, input_basis=basis)
        delta = delta.astype(W.dtype)
        W.data = W.data + delta
        planted[name] = delta
    return planted


def _teacher_pool(teacher, ids, n_batches, spec, seed):
    rng = np.random.default_rng(seed)
    pool = []
    with no_grad():
        for _ in range(n_batches):
            x, _ = get_batch(ids, spec.batch_size, spec.block_size, rng)
            logits, _ = teacher(x)
            pool.append((x, logits.data))
    return pool


def _pool_sampler(pool):
    """``fit``'s sampler for a fixed pool of (x, teacher logits) batches: one drawn at random per step."""
    return lambda rng: pool[int(rng.integers(len(pool)))]


def _logit_matching_loss(student, x, target) -> Tensor:
    """``fit``'s loss_fn for the planted task: mean squared error to the teacher's logits (B, T, V)."""
    logits, _ = student(x)                                      # (B, T, V)
    return ((logits - Tensor(target)) ** 2).mean()


def _mean_squared_error(student, pool) -> float:
    with no_grad():
        return float(np.mean([((student(x)[0].data - target) ** 2).mean() for x, target in pool]))  # host-ok


def _learned_deltas(student, spec: RunSpec, W0: dict) -> dict:
    """{layer: ΔW (out, in)} the student learned: W − W0 (full fine-tuning) or (α/r)·B A (LoRA)."""
    if spec.method == "full":
        return {n: w - W0[n] for n, w in _weights(student, spec.planted_layers).items()}
    return dict(get_delta_weights(student))


def _weight_error(learned: dict, planted: dict) -> float:
    """‖ΔW − ΔW*‖_F / ‖ΔW*‖_F over all planted layers together."""
    return float(np.sqrt(sum(((learned[n] - planted[n]) ** 2).sum() for n in planted))  # host-ok
                 / np.sqrt(sum((planted[n] ** 2).sum() for n in planted)))


def _run_planted(spec: RunSpec, progress: bool) -> dict:
    teacher, _ = load_base()
    student, _ = load_base()
    fables = CharTokenizer().encode(load_corpus("fables", n_chars=60_000, seed=0))
    train_ids, val_ids = train_val_split(fables, 0.1)
    T = spec.block_size
    probe = np.stack([train_ids[i * T:(i + 1) * T] for i in range(8)])  # (8, T) host-ok
    planted = _plant(teacher, spec, probe)
    train_pool = _teacher_pool(teacher, train_ids, 24, spec, seed=1)
    eval_pool = _teacher_pool(teacher, val_ids, 4, spec, seed=2)
    base_error = _mean_squared_error(student, eval_pool)
    W0 = _weights(student, spec.planted_layers)
    _make_trainable(student, spec, full_names=spec.planted_layers)
    history = fit(student, _pool_sampler(train_pool), steps=spec.steps, lr=spec.lr,
                  warmup_steps=max(1, spec.steps // 10), min_lr_ratio=0.01, grad_clip=1.0, seed=spec.seed,
                  loss_fn=_logit_matching_loss, progress=progress,
                  desc=f"planted {'full' if spec.method == 'full' else f'r={spec.rank}'}")
    metrics = {"rel_error": _mean_squared_error(student, eval_pool) / base_error,
               "weight_error": _weight_error(_learned_deltas(student, spec, W0), planted),
               "base_mse": base_error, "val_loss": None, "base_val_loss": None, "accuracy": None}
    return {"metrics": metrics, "curve": {"step": history["step"], "train_loss": history["train_loss"]},
            "adapter_bytes": _adapter_bytes(student) if spec.method == "lora" else None,
            "full_checkpoint_bytes": _checkpoint_bytes(student),
            "planted": {"k_star": spec.k_star, "layers": list(spec.planted_layers)},
            "analysis": _analysis(student, spec, W0), "_counts": count_parameters(student)}
