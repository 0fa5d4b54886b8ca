"""The shipped pretrained base model: load it in one call, or rebuild it from a seed.

Every LoRA notebook and sweep starts from this same frozen W: a "base" preset GPT
pre-trained on generated text that is 70% fables, 25% recipes in a cookbook's layout and 5% sums.
``tinylora pretrain`` reproduces it.

>>> model, tokenizer = load_base()
>>> model.config.n_embd
128
"""
from __future__ import annotations

import os
import time
from importlib import resources

import numpy as np

from .data import CharTokenizer, load_corpus, train_val_split
from .io import save_model
from .models import load_model
from .models.gpt import GPT, GPTConfig
from .train import estimate_loss, fit

BASE_CORPUS = "fables"
# Like a real pre-training corpus, the base text is mostly one kind (fables) with some of
# everything else: recipes in a cookbook's layout, and sums, drawn with another seed than the
# fine-tuning data. The base model therefore knows what recipes say; fine-tuning to the
# ``recipes`` cards only has to teach it their layout (labels, "-" bullets, "1." steps).
BASE_MIXTURE = {"fables": 0.70, "cookbook": 0.25, "arithmetic": 0.05}
MIXTURE_SEED_OFFSET = 100
# The recipe behind the shipped file; `tinylora pretrain` uses these defaults.
PRETRAIN_DEFAULTS = dict(preset="base", corpus_chars=800_000, steps=2000, batch_size=32, lr=3e-3,
                         warmup_steps=100, seed=0)


def base_model_path() -> str:
    """Path of the shipped base checkpoint inside the installed package."""
    return str(resources.files("tinylora") / "assets" / "base_model.npz")


def load_base(device: str = "cpu", path: str | None = None, with_metadata: bool = False):
    """The pretrained base GPT and its tokenizer: ``model, tokenizer = load_base()``.

    ``with_metadata=True`` also returns how it was trained (steps, seed, losses, seconds).
    """
    path = path or base_model_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no base model at {path!r}; build one with `tinylora pretrain --out {path}`")
    model, metadata = load_model(path, device=device, with_metadata=True)
    tokenizer = CharTokenizer()
    return (model, tokenizer, metadata) if with_metadata else (model, tokenizer)


def base_corpus_text(n_chars: int = PRETRAIN_DEFAULTS["corpus_chars"], seed: int = 0) -> str:
    """The pre-training text: whole documents of each ``BASE_MIXTURE`` corpus, shuffled together."""
    documents = []
    for name, share in BASE_MIXTURE.items():
        corpus_seed = seed if name == BASE_CORPUS else seed + MIXTURE_SEED_OFFSET
        text = load_corpus(name, n_chars=max(1, int(n_chars * share)), seed=corpus_seed)
        separator = "\n" if name == "arithmetic" else "\n\n"
        parts = [p for p in text.split(separator) if p.strip()]
        if name == "arithmetic":  # blocks of 8 sums, so a sum is a short document of its own kind
            parts = ["\n".join(parts[i:i + 8]) for i in range(0, len(parts), 8)]
        documents += [p.strip("\n") + "\n\n" for p in parts]
    order = np.random.default_rng(seed).permutation(len(documents))
    return "".join(documents[i] for i in order)


def base_corpus_splits(n_chars: int = PRETRAIN_DEFAULTS["corpus_chars"], seed: int = 0):
    """Token ids of the base corpus (the BASE_MIXTURE), split into (train, validation)."""
    return train_val_split(CharTokenizer().encode(base_corpus_text(n_chars, seed)), 0.1)


def pretrain(out_path: str, *, preset: str = PRETRAIN_DEFAULTS["preset"],
             corpus_chars: int = PRETRAIN_DEFAULTS["corpus_chars"],
             steps: int = PRETRAIN_DEFAULTS["steps"], batch_size: int = PRETRAIN_DEFAULTS["batch_size"],
             lr: float = PRETRAIN_DEFAULTS["lr"], warmup_steps: int = PRETRAIN_DEFAULTS["warmup_steps"],
             seed: int = PRETRAIN_DEFAULTS["seed"], progress: bool = True) -> dict:
    """Pre-train a GPT on the base corpus from ``seed`` and save it to ``out_path``; return its metadata."""
    train_ids, val_ids = base_corpus_splits(corpus_chars, seed)
    model = GPT(GPTConfig.preset(preset), seed=seed)
    history = fit(model, train_ids, val_ids, steps=steps, batch_size=batch_size, lr=lr,
                  warmup_steps=warmup_steps, weight_decay=0.01, eval_every=max(1, steps // 10),
                  seed=seed, progress=progress, desc="pretrain")
    metadata = dict(corpus=BASE_MIXTURE, corpus_chars=corpus_chars, preset=preset, steps=steps,
                    batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, seed=seed,
                    seconds=round(history["seconds"], 1),
                    final_train_loss=round(
                        sum(history["train_loss"][-50:]) / len(history["train_loss"][-50:]), 4),
                    final_val_loss=round(estimate_loss(model, val_ids, max_batches=None), 4),
                    parameters=model.num_parameters(), created=time.strftime("%Y-%m-%d"))
    save_model(model, out_path, metadata)
    return metadata
