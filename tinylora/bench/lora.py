"""LoRA benchmark: what an adapter saves against full fine-tuning, measured in one run.

    tinylora bench lora              # or: python benchmarks/lora.py
    tinylora bench lora --quick      # the nano config, a few samples: a smoke test in seconds

On ``GPTConfig.preset("bench")`` (C=256, L=4, H=4, T=128, vocab 96), batch 16, LoRA r=8 on
q_proj and v_proj, it compares with full fine-tuning of the same model:
  - training-step time (forward, backward, AdamW step), median over interleaved samples, with
    PyTorch's LoRA/full ratio on the same model and batch measured right after (when PyTorch is
    installed) as a reference for what this machine allows;
  - inference time of the merged and the unmerged LoRA model against the base model;
  - bytes held for training (parameters + gradients + AdamW moments), and the peak resident
    memory of a few training steps, each mode in its own subprocess so they do not share a peak;
  - bytes on disk: the adapter (lora.save_adapter) against a full checkpoint (save_model).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc

from .. import lora
from ..io import save_model
from ..models.gpt import GPT, GPTConfig
from ..tensor import no_grad
from .common import (
    OneLineParser,
    batch_of_ids,
    environment_report,
    median_times,
    peak_rss_bytes,
    training_step,
)

TARGETS = {"train step": 0.75, "merged inference": 1.02, "training bytes": 0.30}
LORA = dict(r=8, lora_alpha=16, target_modules=("q_proj", "v_proj"))
# name -> (label, config, batch size)
CASES = {
    "quick": ("nano: C=32, L=2, H=2, T=32", GPTConfig.preset("nano"), 4),
    "bench": ("bench: C=256, L=4, H=4, T=128", GPTConfig.preset("bench"), 16),
}


def make_model(config: GPTConfig, mode: str) -> GPT:
    """The base GPT ("full": every weight trains) or the same GPT with a LoRA adapter ("lora")."""
    model = GPT(config, seed=0)
    return lora.apply_lora(model, lora.LoraConfig(**LORA)) if mode == "lora" else model


def training_bytes(model: GPT, optimizer) -> int:
    """Bytes of parameters + gradients + optimizer moments (after at least one step)."""
    params = sum(p.data.nbytes for p in model.parameters())
    grads = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    moments = sum(v.nbytes for state in optimizer.state.values() for v in state.values()
                  if hasattr(v, "nbytes"))
    return params + grads + moments


def torch_lora_steps(config: GPTConfig, batch: int, torch) -> dict:
    """{"torch full", "torch lora"}: PyTorch training steps of the same GPT, for a reference ratio.

    The LoRA model freezes every weight and adds ``x Aᵀ Bᵀ · α/r`` to q_proj and v_proj, as
    tinylora's adapter does; PyTorch's autograd then skips the frozen weights' gradients.
    """
    from .gpt import torch_gpt, torch_training_step

    nn = torch.nn
    state = GPT(config, seed=0).state_dict()
    x, y = (torch.from_numpy(a) for a in batch_of_ids(config, batch))

    class LoRALinear(nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base, r = base, LORA["r"]
            self.lora_A = nn.Parameter(torch.randn(r, base.in_features) / base.in_features ** 0.5)  # (r, in)
            self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))                       # (out, r)
            self.scaling = LORA["lora_alpha"] / r

        def forward(self, h):
            return self.base(h) + (h @ self.lora_A.T @ self.lora_B.T) * self.scaling

    steps = {}
    for mode in ("full", "lora"):
        model = torch_gpt(config, state, torch)
        if mode == "lora":
            model.requires_grad_(False)
            for block in model.blocks:
                block.attn.q_proj, block.attn.v_proj = (LoRALinear(block.attn.q_proj),
                                                        LoRALinear(block.attn.v_proj))
        steps[f"torch {mode}"] = torch_training_step(model, x, y, torch, lr=1e-3, weight_decay=0.0)
    return steps


def time_training(config, batch, repeat, warmup) -> tuple[dict, dict]:
    """({mode: median seconds per step}, {mode: training bytes}) for "full" and "lora", and for
    "torch full" and "torch lora" when PyTorch is installed (each pair timed in turn in one loop)."""
    x, y = batch_of_ids(config, batch)
    steps, sizes = {}, {}
    for mode in ("full", "lora"):
        model = make_model(config, mode)
        steps[mode], optimizer = training_step(model, x, y)
        steps[mode]()
        sizes[mode] = training_bytes(model, optimizer)
    times = median_times(steps, repeat, warmup)
    try:
        import torch
    except ImportError:
        return times, sizes
    # A loop of its own: PyTorch's worker threads stay busy for a while after each of its steps,
    # and would slow whichever tinylora step came next.
    return {**times, **median_times(torch_lora_steps(config, batch, torch), repeat, warmup)}, sizes


def time_inference(config, batch, repeat, warmup) -> dict:
    """Median seconds of one no-grad forward: "base", "merged" LoRA and "unmerged" LoRA."""
    x, _ = batch_of_ids(config, batch)
    base = GPT(config, seed=0).eval()
    unmerged = make_model(config, "lora").eval()
    merged = lora.merge_lora(make_model(config, "lora").eval())

    def forward(model):
        def run():
            with no_grad():
                model(x)
        return run
    return median_times({"base": forward(base), "merged": forward(merged), "unmerged": forward(unmerged)},
                                 repeat, warmup)


def file_sizes(config) -> dict:
    """Bytes on disk: the full checkpoint (.npz) and the adapter (safetensors + config JSON)."""
    model = make_model(config, "lora")
    with tempfile.TemporaryDirectory() as folder:
        save_model(GPT(config, seed=0), os.path.join(folder, "full.npz"))
        lora.save_adapter(model, os.path.join(folder, "adapter"))
        adapter = os.path.join(folder, "adapter")
        return {"full": os.path.getsize(os.path.join(folder, "full.npz")),
                "adapter": sum(os.path.getsize(os.path.join(adapter, f)) for f in os.listdir(adapter)),
                "adapter weights": os.path.getsize(os.path.join(adapter, lora.ADAPTER_WEIGHTS_NAME))}


# ---- peak memory, one subprocess per mode ---------------------------------------------------
def peak_memory_child(case: str, mode: str, steps: int) -> dict:
    """Run in a fresh process: peak RSS after ``steps`` training steps, the RSS before the model was
    built, and the peak of memory traced by tracemalloc (NumPy's arrays included) during the steps."""
    _, config, batch = CASES[case]
    before = peak_rss_bytes()
    tracemalloc.start()
    x, y = batch_of_ids(config, batch)
    step, _ = training_step(make_model(config, mode), x, y)
    for _ in range(steps):
        step()
    return {"before": before, "peak": peak_rss_bytes(), "traced": tracemalloc.get_traced_memory()[1]}


def peak_memory(case: str, steps: int) -> dict:
    """{mode: {"before", "peak"}} measured in one subprocess per mode."""
    result = {}
    for mode in ("full", "lora"):
        out = subprocess.run([sys.executable, "-m", "tinylora.bench.lora", "--case", case,
                              "--peak-child", mode, "--steps", str(steps)],
                             capture_output=True, text=True, check=True)
        result[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ---- the report ------------------------------------------------------------------------------
def _row(name, ours, reference, unit, target=None) -> str:
    if not reference:
        return f"{name:<36}{ours:>12.{unit}}{reference:>12.{unit}}{'-':>9}"
    ratio = ours / reference
    verdict = "" if target is None else f"<= {target:.2f}   {'ok' if ratio <= target else 'MISSED'}"
    return f"{name:<36}{ours:>12.{unit}}{reference:>12.{unit}}{ratio:>9.3f}   {verdict}"


def report(label, batch, steps, sizes, inference, memory, files) -> None:
    mib = 2 ** 20
    print(f"\nLoRA vs full fine-tuning on {label}, batch {batch}, "
          f"r={LORA['r']} on {'+'.join(LORA['target_modules'])}")
    print(f"{'measure':<36}{'LoRA':>12}{'reference':>12}{'ratio':>9}   target")
    print(_row("train step ms (vs full)", steps["lora"] * 1e3, steps["full"] * 1e3, "2f",
               TARGETS["train step"]))
    if "torch lora" in steps:
        print(_row("  PyTorch, same model and batch",
                   steps["torch lora"] * 1e3, steps["torch full"] * 1e3, "2f"))
    print(_row("merged inference ms (vs base)", inference["merged"] * 1e3, inference["base"] * 1e3, "2f",
               TARGETS["merged inference"]))
    print(_row("unmerged inference ms (vs base)", inference["unmerged"] * 1e3, inference["base"] * 1e3, "2f"))
    print(_row("training bytes MiB (vs full)", sizes["lora"] / mib, sizes["full"] / mib, "2f",
               TARGETS["training bytes"]))
    print(_row("peak traced MiB (vs full)",
               memory["lora"]["traced"] / mib, memory["full"]["traced"] / mib, "1f"))
    print(_row("peak RSS MiB (vs full)", memory["lora"]["peak"] / mib, memory["full"]["peak"] / mib, "1f"))
    grown = {mode: (m["peak"] - m["before"]) / mib for mode, m in memory.items()}
    print(_row("  of which above the imports", grown["lora"], grown["full"], "1f"))
    print(_row("file KiB (adapter vs checkpoint)", files["adapter"] / 1024, files["full"] / 1024, "1f"))
    print(f"(training bytes = parameters + gradients + AdamW moments; adapter weights alone: "
          f"{files['adapter weights']:,} bytes)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tinylora bench lora", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeat", type=int, default=21,
                        help="timed samples per measurement (the median is shown)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed samples first")
    parser.add_argument("--steps", type=int, default=3,
                        help="training steps for the peak-memory subprocesses")
    parser.add_argument("--quick", action="store_true",
                        help="the nano config and 3 samples: a fast smoke run")
    parser.add_argument("--case", choices=sorted(CASES), default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--peak-child", choices=["full", "lora"], help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.peak_child:  # the subprocess side of peak_memory
        print(json.dumps(peak_memory_child(args.case, args.peak_child, args.steps)))
        return 0
    case = "quick" if args.quick else args.case
    repeat, warmup, steps = (3, 1, 1) if args.quick else (args.repeat, args.warmup, args.steps)
    label, config, batch = CASES[case]
    environment_report()
    memory = peak_memory(case, steps)  # first, while this process is small and the machine quiet
    step_times, sizes = time_training(config, batch, repeat, warmup)
    inference = time_inference(config, batch, repeat, warmup)
    report(label, batch, step_times, sizes, inference, memory, file_sizes(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
