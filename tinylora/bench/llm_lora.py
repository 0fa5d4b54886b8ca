"""LoRA fine-tuning benchmark on SmolLM2-135M: tinylora's training step against PyTorch + PEFT, a 4-bit base.

    tinylora bench llm-lora            # SmolLM2-135M-Instruct, batch 4, sequence 128, r = 8 on q_proj, v_proj
    tinylora bench llm-lora --quick    # the tiny random Llama preset, a few small steps: a smoke run

Measured side by side in one run (the functions take turns, medians shown):
  - one training step (forward, backward, AdamW) of LoRA in tinylora, of LoRA on a 4-bit base (NF4, and
    GGUF's own Q4_1 blocks: ``quantize_base(model, method="q4_1")``), of full fine-tuning (every
    parameter trains), and of LoRA in PyTorch + PEFT on transformers'
    LlamaForCausalLM holding the same weights (skipped without torch, transformers and peft);
  - inference (a forward of the same batch, no gradients) with the adapter unmerged and merged, in a
    fresh process that holds only those two models;
  - peak resident memory (VmHWM) of full fine-tuning, LoRA and LoRA on each 4-bit base, each in a fresh
    process: the high-water mark is reset once the model is built, then ``--rss-steps`` steps run; next to
    it, ``memory_report`` of the same run (counted weights, gradients and optimizer state, measured
    activations), and their difference;
  - QLoRA's quality: ``--quality-steps`` steps of LoRA on the float32 base and on each 4-bit base, same
    seed and batches, on a generated corpus (recipe cards, ``tinylora.corpora``), held-out loss before
    and after.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import statistics
import subprocess
import sys

import numpy as np

from .._validate import check_int
from .common import OneLineParser, environment_report, peak_rss_bytes, timing_samples, training_step
from .gpt import _limit_threads

DEFAULT_MODEL = "smollm2-135m-instruct"
GOAL = 1.0  # tinylora's LoRA step over PyTorch + PEFT's
INFERENCE_REPEAT = 7  # at least this many forwards of each model (they take about a second)
# batch, sequence, timed repeats, warmup rounds, steps per RSS child, quality steps, quality sequence
SETTINGS = {"full": dict(batch=4, seq=128, repeat=5, warmup=1, rss_steps=2, quality_steps=24, quality_seq=64),
            "quick": dict(batch=2, seq=16, repeat=2, warmup=1, rss_steps=1, quality_steps=3, quality_seq=16)}
LORA = dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
KINDS = ("full", "lora", "qlora", "qlora-q4_1")  # qlora: NF4, blocks of 64; qlora-q4_1: the GGUF's blocks
QUANTIZED = {"qlora": "nf4", "qlora-q4_1": "q4_1"}


# ---- the models ------------------------------------------------------------------------------
def load_base(name: str):
    """(model, tokenizer): ``"tiny"`` is the random tiny Llama preset (no tokenizer), anything else a
    ``load_pretrained`` source."""
    if name == "tiny":
        from ..models import Llama, LlamaConfig
        return Llama(LlamaConfig.preset("tiny"), seed=0), None
    from ..hub import load_pretrained
    return load_pretrained(name)


def build(kind: str, name: str, init_lora_weights=True):
    """A model ready to train: "full" (every parameter), "lora" (r = 8 on q, v), "qlora" (the same on NF4),
    "qlora-q4_1" (the same on Q4_1 blocks, the GGUF file's own)."""
    from ..lora import LoraConfig, apply_lora, quantize_base
    model, _ = load_base(name)
    if kind in QUANTIZED:
        quantize_base(model, method=QUANTIZED[kind])
    if kind != "full":
        apply_lora(model, LoraConfig(**LORA, init_lora_weights=init_lora_weights))
    return model


def batch_of(vocab_size: int, batch: int, seq: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, (batch, seq)), rng.integers(0, vocab_size, (batch, seq))


def peft_model(model, torch):
    """transformers' LlamaForCausalLM with ``model``'s weights (the names are the same), LoRA by PEFT."""
    import peft
    import transformers

    c = model.config
    config = transformers.LlamaConfig(**{k: v for k, v in c.to_dict().items() if v is not None})
    hf = transformers.LlamaForCausalLM(config)
    state = {name: torch.from_numpy(np.array(p.data)) for name, p in model.named_parameters()
             if ".adapters." not in name and "lora_" not in name}
    state = {name.replace(".base_layer", ""): t for name, t in state.items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    hf.tie_weights()
    return peft.get_peft_model(hf, peft.LoraConfig(**LORA, lora_dropout=0.0))


def peft_step(model, x, y, torch):
    """One forward, backward and AdamW step of a PEFT model, as ``training_step`` does for tinylora."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                                  weight_decay=0.0)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def import_peft(skip: bool):
    """(torch, None) when PyTorch, transformers and peft are installed, else (None, why not)."""
    if skip:
        return None, "--skip-torch"
    try:
        import peft  # noqa: F401
        import torch
        import transformers  # noqa: F401
    except ImportError as err:
        return None, f"not installed ({err.name}); pip install torch transformers peft"
    return torch, None


# ---- timing in this process ----------------------------------------------------------------------
def time_steps(name: str, s: dict, torch) -> dict:
    """Median seconds of each training step, measured in turns."""
    models = {kind: build(kind, name) for kind in KINDS}
    x, y = batch_of(models["lora"].config.vocab_size, s["batch"], s["seq"])
    fns = {f"{kind} step": training_step(model, x, y)[0] for kind, model in models.items()}
    if torch:
        fns["peft step"] = peft_step(peft_model(models["lora"], torch), x, y, torch)
    samples = timing_samples(fns, repeat=s["repeat"], warmup=s["warmup"])
    return {name: statistics.median(times) for name, times in samples.items()}


def time_inference(name: str, s: dict) -> dict:
    """Median seconds of a forward (no gradients) with the adapter unmerged and merged, in turns, in a
    process that holds just these two models (run through ``--child inference``)."""
    from ..lora import merge_and_unload
    from ..tensor import no_grad

    merged = merge_and_unload(build("lora", name, init_lora_weights=False))
    unmerged = build("lora", name, init_lora_weights=False)
    x, _ = batch_of(merged.config.vocab_size, s["batch"], s["seq"])

    def infer(model):
        def run():
            with no_grad():
                model(x)
        return run
    fns = {"unmerged forward": infer(unmerged), "merged forward": infer(merged)}
    samples = timing_samples(fns, repeat=max(s["repeat"], INFERENCE_REPEAT), warmup=s["warmup"])
    return {name: statistics.median(times) for name, times in samples.items()}


# ---- fresh processes: peak memory against the memory report ---------------------------------------
def _rss_now() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _reset_peak() -> bool:
    """Hand freed heap back to the OS and reset VmHWM to the current RSS (Linux); False where it cannot."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_child(kind: str, name: str, s: dict) -> dict:
    """In a fresh process: build ``kind``, reset the peak, run the steps; the peak above the RSS before
    the model existed, and ``memory_report`` of the same model, optimizer and batch."""
    from ..memory import memory_report
    start = _rss_now()
    model = build(kind, name)
    gc.collect()
    reset = _reset_peak()
    x, y = batch_of(model.config.vocab_size, s["batch"], s["seq"])
    step, optimizer = training_step(model, x, y)
    for _ in range(s["rss_steps"]):
        step()
    peak = peak_rss_bytes()
    report = memory_report(model, optimizer, batch=(x, y), verbose=False)
    return {"peak": peak, "start": start, "reset": reset, "report": report.rows(), "total": report.total}


def in_child(kind: str, name: str, quick: bool, threads: int, rss_steps: int) -> dict:
    command = [sys.executable, "-m", "tinylora.bench.llm_lora", "--child", kind, "--model", name,
               "--threads", str(threads), "--rss-steps", str(rss_steps)] + (["--quick"] if quick else [])
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the {kind} child process failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- QLoRA's quality: the same LoRA run on both bases --------------------------------------------
def corpus_ids(tokenizer, n_chars: int = 60_000) -> np.ndarray:
    """Recipe cards (tinylora.corpora) as token ids; without a tokenizer, their ASCII bytes."""
    from ..corpora import load_corpus
    text = load_corpus("recipes", n_chars=n_chars, seed=0)
    return np.asarray(tokenizer.encode(text) if tokenizer else list(text.encode("ascii")), dtype=np.int64)


def heldout_loss(model, windows: np.ndarray) -> float:
    from ..tensor import no_grad
    with no_grad():
        return float(model(windows[:, :-1], windows[:, 1:])[1].item())


def quality(name: str, s: dict, seed: int = 0, lr: float = 1e-3) -> dict:
    """Held-out loss before and after ``quality_steps`` LoRA steps on the float32 and on the 4-bit base."""
    _, tokenizer = load_base(name)
    ids = corpus_ids(tokenizer)
    split, T = int(0.9 * ids.size), s["quality_seq"]
    train, held = ids[:split], ids[split:]
    n_windows = min(8, (held.size - 1) // (T + 1))
    windows = held[:n_windows * (T + 1)].reshape(n_windows, T + 1)
    results = {}
    for kind in ("lora",) + tuple(QUANTIZED):
        model = build(kind, name)
        before = heldout_loss(model, windows)
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, train.size - T - 1, size=(s["quality_steps"], s["batch"]))
        batches = [(np.stack([train[i:i + T] for i in row]), np.stack([train[i + 1:i + T + 1] for i in row]))
                   for row in starts]
        from ..optim import AdamW
        optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
        for x, y in batches:
            _, loss = model(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results[kind] = (before, heldout_loss(model, windows))
        del model, optimizer
        gc.collect()
    return results


# ---- the report -----------------------------------------------------------------------------------
def print_steps(times: dict, s: dict) -> None:
    print(f"\ntraining step, batch {s['batch']} x sequence {s['seq']}, LoRA r=8 on q_proj, v_proj "
          f"(median of {s['repeat']})")
    for name, seconds in times.items():
        print(f"  {name:<22} {seconds * 1e3:>10.1f} ms")
    lora = times["lora step"]
    if "peft step" in times:
        ratio = lora / times["peft step"]
        print(f"  tinylora LoRA / PyTorch+PEFT LoRA: {ratio:.2f}x (goal <= {GOAL}: "
              f"{'ok' if ratio <= GOAL else 'MISSED'})")
    print(f"  tinylora LoRA / full fine-tuning:  {lora / times['full step']:.2f}x")
    print(f"  LoRA on the NF4 base / LoRA:       {times['qlora step'] / lora:.2f}x")
    print(f"  LoRA on the Q4_1 base / LoRA:      {times['qlora-q4_1 step'] / lora:.2f}x")
    print(f"  merged / unmerged forward:         {times['merged forward'] / times['unmerged forward']:.2f}x")


def print_memory(children: dict) -> None:
    print("\npeak RSS (fresh process each; peak reset after the model is built) against memory_report")
    print(f"  {'run':<8} {'peak - start MiB':>17} {'report MiB':>11} {'report / RSS':>13}")
    for kind, c in children.items():
        used = c["peak"] - c["start"]
        print(f"  {kind:<8} {used / 2**20:>17.1f} {c['total'] / 2**20:>11.1f} {c['total'] / used:>13.2f}"
              + ("" if c["reset"] else "  (peak not reset: includes loading)"))
    frozen = {kind: sum(n for row, n in c["report"] if row.startswith("frozen"))
              for kind, c in children.items()}
    for kind in QUANTIZED:
        print(f"  frozen-weight bytes, {kind} / float32: {frozen[kind]:,d} / {frozen['lora']:,d} = "
              f"{frozen[kind] / frozen['lora']:.3f}x (goal <= 0.3)")
    for kind, c in children.items():
        print(f"\nmemory_report, {kind}:")
        for row, n in c["report"]:
            print(f"  {row:<48} {'not measured' if n is None else f'{n / 2**20:10.1f} MiB'}")


def print_quality(results: dict, s: dict) -> None:
    b32, a32 = results["lora"]
    print(f"\nQLoRA quality: {s['quality_steps']} LoRA steps, batch {s['batch']} x {s['quality_seq']}, "
          "recipe cards (tinylora.corpora), held-out loss")
    print(f"  {'float32 base:':<14} {b32:.4f} before, {a32:.4f} after")
    for kind, method in QUANTIZED.items():
        b4, a4 = results[kind]
        print(f"  {method.upper() + ' base:':<14} {b4:.4f} before, {a4:.4f} after; "
              f"after, vs float32: {100 * (a4 - a32) / a32:+.2f}% (goal within 2%)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tinylora bench llm-lora", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--model", default=None,
        help=f"a load_pretrained source (default {DEFAULT_MODEL}; 'tiny' with --quick)")
    add("--quick", action="store_true", help="small batches and few steps (on the tiny preset by default)")
    add("--quality-steps", type=int, default=None, help="steps of the QLoRA quality runs (0: skip them)")
    add("--repeat", type=int, default=None, help="timed rounds, after one warmup (default 5; 2 with --quick)")
    add("--rss-steps", type=int, default=None, help="training steps in each peak-RSS process (default 2)")
    add("--threads", type=int, default=None, help="BLAS and PyTorch threads (default: NumPy's BLAS count)")
    add("--skip-torch", action="store_true", help="measure tinylora only")
    add("--skip-memory", action="store_true", help="no fresh processes for peak RSS")
    add("--child", choices=KINDS + ("inference",), help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    s = dict(SETTINGS["quick" if args.quick else "full"])
    for key in ("quality_steps", "repeat", "rss_steps"):
        if getattr(args, key) is not None:
            flag, low = f"--{key.replace('_', '-')}", int(key == "repeat")
            s[key] = check_int(flag, getattr(args, key), low=low)
    name = args.model or ("tiny" if args.quick else DEFAULT_MODEL)
    threads = _limit_threads(args.threads)
    if args.child:
        child = time_inference(name, s) if args.child == "inference" else rss_child(args.child, name, s)
        print(json.dumps(child))
        return 0
    torch, why_not = import_peft(args.skip_torch)
    if torch:
        torch.set_num_threads(threads)
    environment_report()
    print(f"threads: {threads}; model: {name}")
    times = time_steps(name, s, torch)
    times.update(in_child("inference", name, args.quick, threads, s["rss_steps"]))
    print_steps(times, s)
    if not torch:
        print(f"  PyTorch+PEFT column skipped: {why_not}")
    if not args.skip_memory:
        print_memory({kind: in_child(kind, name, args.quick, threads, s["rss_steps"]) for kind in KINDS})
    if s["quality_steps"]:
        print_quality(quality(name, s), s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
