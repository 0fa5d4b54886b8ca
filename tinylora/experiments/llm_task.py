"""The real-model task of the sweep: teach SmolLM2-135M-Instruct a house style, measure what it forgets.

``cards`` (``tinylora.corpora.cards``): a person described in words, answered in one fixed line
of JSON. SmolLM2 answers such prompts in prose by itself, so the change is visible. Each run
fine-tunes the base with LoRA of rank r (or fully: the adapted matrices, or every linear layer)
on the answer tokens only (the prompt's targets are masked) and reports

- ``val_loss``: loss on the answers of held-out prompts (people never seen in training);
- ``accuracy``: the exact-answer rate on them, teacher-forced: greedy decoding writes the expected
  card exactly iff at every answer position the expected token is the argmax, end-of-turn included;
- ``forget_loss``: loss on the base's own greedy answers to varied chat prompts
  (``base_answers``), the forgetting measure of Biderman et al. (2024, arXiv:2405.09673);
- ``samples``: greedy replies to a few held-out prompts, from the base and from the fine-tuned model,
  with ``format_rate``, the share of them that are cards.
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
from .. import functional as F
from .._validate import check_choice, check_int
from ..corpora.cards import make_card_examples, score_card
from ..lora import ADAPTER_WEIGHTS_NAME, LoraConfig, apply_lora, count_parameters, save_adapter
from ..tensor import no_grad
from ..train import fit
from .base_answers import END_OF_TURN, greedy_reply, load_base_answers

__all__ = ["LLM_TASKS", "LLM_MODELS", "LLM_DEFAULTS", "LlmRunSpec", "llm_runs", "run", "encode_chat",
           "masked_batch", "answer_loss", "answer_stats", "IGNORE_INDEX"]

LLM_TASKS = ("cards",)
LLM_MODELS = ("smollm2-135m-instruct",)
# Sized for 2 shared CPU cores: a step of 4 sequences of about 75 tokens takes about 2.5 CPU-seconds.
LLM_DEFAULTS = {"cards": dict(steps=16, lr=2e-3, full_lr=1e-4, init="kaiming")}
IGNORE_INDEX = -100


@dataclass(frozen=True)
class LlmRunSpec:
    """Everything that determines one real-model run's numbers."""

    task: str
    method: str                      # "lora" or "full"
    rank: int | None                 # None for full fine-tuning
    targets: tuple = ("q_proj", "v_proj")   # LoRA's targets, or the layers full fine-tuning trains
    model: str = "smollm2-135m-instruct"
    alpha: float = 16.0
    rslora: bool = False
    seed: int = 0
    steps: int = 16
    lr: float = 2e-3
    batch_size: int = 4
    init: str = "kaiming"
    n_train: int = 128
    n_eval: int = 16
    n_forget: int | None = None      # how many of the base's answers to read (None: all)
    n_samples: int = 3
    max_new_tokens: int = 32

    def __post_init__(self):
        check_choice("task", self.task, LLM_TASKS, where="LlmRunSpec")
        check_choice("model", self.model, LLM_MODELS, where="LlmRunSpec")
        check_choice("method", self.method, ("lora", "full"), where="LlmRunSpec")

    @property
    def run_id(self) -> str:
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        rank = "full" if self.method == "full" else f"r{self.rank}"
        scale = "-rs" if self.rslora else ""
        return f"{self.task}-{rank}{scale}-{'+'.join(self.targets)}-s{self.seed}-{digest}"

    def to_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d: dict) -> "LlmRunSpec":
        return cls(**{**d, "targets": tuple(d["targets"])})


def llm_runs(config) -> list[LlmRunSpec]:
    """The runs of a ``SweepConfig`` whose ``model`` is set: LoRA at each rank, then full fine-tuning
    of the adapted matrices and of every linear layer (``include_full``)."""
    specs = []
    for task in config.tasks:
        defaults = LLM_DEFAULTS[task]
        common = dict(task=task, model=config.model, alpha=config.alpha, init=defaults["init"],
                      steps=config.steps or defaults["steps"])
        variants = [dict(method="lora", rank=r, targets=tuple(config.targets), rslora=config.rslora,
                         lr=config.lr or defaults["lr"]) for r in config.ranks]
        full_lr = config.full_lr or defaults["full_lr"]
        if config.include_full:
            variants += [dict(method="full", rank=None, targets=scope, lr=full_lr)
                         for scope in (tuple(config.targets), ("all-linear",))]
        specs += [LlmRunSpec(**common, **v, seed=seed) for seed in config.seeds for v in variants]
    return list({spec.run_id: spec for spec in specs}.values())  # targets all-linear: one full run


# ---- data: chat-template token ids with the prompt masked -----------------------------------------
def encode_chat(tokenizer, prompt: str, answer: str, ended: bool = True) -> tuple[np.ndarray, int]:
    """(ids (T,), n_prompt): the prompt in the chat template, then the answer and its end-of-turn token."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    prompt_ids = tokenizer.encode(text)
    answer_ids = list(tokenizer.encode(answer, add_special_tokens=False))
    if ended:
        answer_ids.append(tokenizer.token_to_id(END_OF_TURN))
    return np.array(list(prompt_ids) + answer_ids, dtype=np.int64), len(prompt_ids)


def masked_batch(examples: list[tuple[np.ndarray, int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), both (B, T): inputs padded with ``pad_id``; targets shifted by one, ``IGNORE_INDEX``
    on the prompt and the padding, so only answer tokens count.

    >>> x, y = masked_batch([(np.array([5, 6, 7, 8]), 2), (np.array([5, 9, 4]), 2)], pad_id=0)
    >>> x.tolist(), y.tolist()
    ([[5, 6, 7], [5, 9, 0]], [[-100, 7, 8], [-100, 4, -100]])
    """
    T = max(len(ids) for ids, _ in examples) - 1
    x = np.full((len(examples), T), pad_id, dtype=np.int64)        # (B, T)
    y = np.full((len(examples), T), IGNORE_INDEX, dtype=np.int64)  # (B, T)
    for i, (ids, n_prompt) in enumerate(examples):
        x[i, :len(ids) - 1] = ids[:-1]
        y[i, n_prompt - 1:len(ids) - 1] = ids[n_prompt:]
    return x, y


def answer_loss(model, x, y):
    """``fit``'s loss_fn: mean cross-entropy over the answer tokens (targets not ``IGNORE_INDEX``)."""
    logits, _ = model(x)                                                    # (B, T, V)
    return F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)


def answer_stats(model, examples, pad_id: int, batch_size: int = 8) -> dict:
    """Token-weighted mean answer loss, and the share of examples whose every answer token is the argmax
    (= greedy decoding gives the answer exactly), over ``examples`` (deterministic, no gradients)."""
    was_training = model.training
    model.eval()
    total, tokens, exact = 0.0, 0, []
    with no_grad():
        for i in range(0, len(examples), batch_size):
            x, y = masked_batch(examples[i:i + batch_size], pad_id)
            logits, _ = model(x)                                            # (B, T, V)
            kept = int((y != IGNORE_INDEX).sum())  # host-ok: a count
            total += F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX).item() * kept
            tokens += kept
            hit = (np.asarray(logits.data).argmax(-1) == y) | (y == IGNORE_INDEX)  # (B, T) host-ok
            exact += hit.all(axis=1).tolist()
    model.train(was_training)
    return {"loss": total / tokens, "exact": float(np.mean(exact))}  # host-ok


def _card_data(spec: LlmRunSpec, tokenizer):
    train = make_card_examples(spec.n_train, seed=spec.seed, split="train")
    held_out = make_card_examples(spec.n_eval, seed=1000, split="test")  # the same for every run
    encode = lambda pairs: [encode_chat(tokenizer, p, a) for p, a in pairs]  # noqa: E731
    return encode(train), encode(held_out), held_out[:spec.n_samples]


def _sampler(examples, batch_size: int, pad_id: int):
    """``fit``'s sampler: ``batch_size`` examples drawn at random, padded and masked."""
    def sample(rng):
        picked = rng.choice(len(examples), size=batch_size, replace=False)
        return masked_batch([examples[int(i)] for i in picked], pad_id)
    return sample


# ---- one run --------------------------------------------------------------------------------------
def _make_trainable(model, spec: LlmRunSpec):
    """LoRA on the targets, or (full) unfreeze the weights of the named Linear layers only."""
    targets = "all-linear" if tuple(spec.targets) == ("all-linear",) else list(spec.targets)
    if spec.method == "lora":
        return apply_lora(model, LoraConfig(r=spec.rank, lora_alpha=spec.alpha, target_modules=targets,
                                            use_rslora=spec.rslora, init_lora_weights=spec.init,
                                            seed=spec.seed))
    names = {n for n, m in model.named_modules() if hasattr(m, "in_features") and not n.endswith("lm_head")
             and (targets == "all-linear" or n.split(".")[-1] in targets)}
    for name, p in model.named_parameters():
        p.requires_grad = name.rsplit(".", 1)[0] in names
    return model


def _samples(model, tokenizer, pairs, max_new_tokens: int) -> list[dict]:
    replies = []
    for prompt, answer in pairs:
        reply, _ = greedy_reply(model, tokenizer, prompt, max_new_tokens)
        replies.append({"prompt": prompt, "expected": answer, "reply": reply, **score_card(reply, answer)})
    return replies


_BASE_MEASURES: dict = {}


def _base_measures(spec: LlmRunSpec, model, tokenizer, held_out, forget, sample_pairs):
    """The base's held-out stats, forgetting stats and samples, measured once per process for the same
    evaluation settings (a worker that runs several ranks reuses them; they do not depend on the run)."""
    key = (spec.model, spec.task, spec.n_eval, spec.n_forget, spec.n_samples, spec.max_new_tokens)
    if key not in _BASE_MEASURES:
        pad_id = tokenizer.token_to_id(END_OF_TURN)
        _BASE_MEASURES[key] = (answer_stats(model, held_out, pad_id), answer_stats(model, forget, pad_id),
                               _samples(model, tokenizer, sample_pairs, spec.max_new_tokens))
    stats, forget_stats, samples = _BASE_MEASURES[key]
    return dict(stats), dict(forget_stats), [dict(s) for s in samples]


def _adapter_bytes(model) -> int:
    with tempfile.TemporaryDirectory() as folder:
        save_adapter(model, folder)
        return os.path.getsize(os.path.join(folder, ADAPTER_WEIGHTS_NAME))


def versions() -> dict:
    return {"tinylora": __version__, "numpy": np.__version__, "python": platform.python_version()}


def run(spec: LlmRunSpec | dict, progress: bool = False, blas_threads: int = 1) -> dict:
    """Run one real-model configuration and return its results line (the toy runs' schema, plus
    ``forget_loss``, ``format_rate`` and ``samples``)."""
    from ..hub import load_pretrained  # loads the weights package only when a real run starts

    spec = LlmRunSpec.from_dict(spec) if isinstance(spec, dict) else spec
    check_int("blas_threads", blas_threads, low=1, where="llm_task.run")
    start = time.perf_counter()
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        model, tokenizer = load_pretrained(spec.model)
        pad_id = tokenizer.token_to_id(END_OF_TURN)
        train, held_out, sample_pairs = _card_data(spec, tokenizer)
        forget = [encode_chat(tokenizer, a["prompt"], a["answer"], a["ended"])
                  for a in load_base_answers()[:spec.n_forget]]
        base, base_forget, base_samples = _base_measures(spec, model, tokenizer, held_out, forget,
                                                         sample_pairs)
        _make_trainable(model, spec)
        history = fit(model, _sampler(train, spec.batch_size, pad_id), steps=spec.steps, lr=spec.lr,
                      block_size=1,  # unused: the sampler makes whole padded batches
                      warmup_steps=max(1, spec.steps // 10), grad_clip=1.0, seed=spec.seed,
                      loss_fn=answer_loss, progress=progress,
                      desc=f"{spec.task} {'full' if spec.method == 'full' else f'r={spec.rank}'}")
        tuned, tuned_forget = answer_stats(model, held_out, pad_id), answer_stats(model, forget, pad_id)
        samples = _samples(model, tokenizer, sample_pairs, spec.max_new_tokens)
        adapter_bytes = _adapter_bytes(model) if spec.method == "lora" else None
    trainable, total = count_parameters(model)
    base_params = total - trainable if spec.method == "lora" else total  # float32 bytes: 4 per parameter
    metrics = {"val_loss": tuned["loss"], "base_val_loss": base["loss"], "accuracy": tuned["exact"],
               "base_accuracy": base["exact"], "forget_loss": tuned_forget["loss"],
               "base_forget_loss": base_forget["loss"],
               "format_rate": float(np.mean([s["format"] for s in samples])),  # host-ok
               "base_format_rate": float(np.mean([s["format"] for s in base_samples]))}  # host-ok
    for s, b in zip(samples, base_samples):
        s["base_reply"] = b["reply"]
    return {"metrics": metrics, "curve": {"step": history["step"], "train_loss": history["train_loss"]},
            "samples": samples, "adapter_bytes": adapter_bytes, "full_checkpoint_bytes": 4 * base_params,
            "planted": None, "analysis": None, "versions": versions(),
            "blas_threads": blas_threads, "run_id": spec.run_id, "task": spec.task, "model": spec.model,
            "method": spec.method, "rank": spec.rank, "targets": list(spec.targets), "alpha": spec.alpha,
            "rslora": spec.rslora, "seed": spec.seed, "steps": spec.steps, "lr": spec.lr,
            "spec": spec.to_dict(), "trainable_params": trainable, "total_params": total,
            "trainable_fraction": trainable / total, "seconds": round(time.perf_counter() - start, 3)}
