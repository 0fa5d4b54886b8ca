"""GPT training-step benchmark: tinylora against the same model in PyTorch, in one run.

    tinylora bench gpt               # or: python benchmarks/gpt_step.py
    tinylora bench gpt --quick       # the tiny config only, 3 samples: a smoke test in seconds

One step is forward, cross-entropy, backward and an AdamW update. Both libraries start from
the same weights, see the same batch and use the same number of threads. Model-FLOPs
utilisation (MFU) divides the step's model FLOPs by NumPy's own float32 GEMM rate measured in
this run, so it says how close the step comes to "nothing but matmuls":

    FLOPs per step = 6 * matmul params * tokens + 12 * n_layer * B * T^2 * n_embd

6 = 2 (multiply-add) x 3 (forward, input gradient, weight gradient); the embedding tables are
lookups and do no matmul work. The attention term counts the full T x T score matrix
(q k^T and p v, forward and backward), which both implementations compute.
"""
from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

from ..models.gpt import GPT, GPTConfig
from .common import (
    OneLineParser,
    batch_of_ids,
    environment_report,
    median_time,
    timing_samples,
    training_step,
)

TARGET = 1.0  # tinylora step time <= PyTorch's on the bench config
LR, WEIGHT_DECAY = 3e-4, 0.01

# (label, config, batch size)
CASES = {
    "tiny": ("nano: C=32, L=2, H=2, T=32", GPTConfig.preset("nano"), 8),
    "bench": ("bench: C=256, L=4, H=4, T=128", GPTConfig.preset("bench"), 16),
}


def matmul_params(config: GPTConfig) -> int:
    """Weights that take part in a matmul: every Linear weight (embedding tables excluded)."""
    C, L = config.n_embd, config.n_layer
    per_block = 4 * C * C + 2 * C * 4 * C  # q, k, v, o projections and the two MLP layers
    return L * per_block + C * config.vocab_size  # + lm_head


def step_flops(config: GPTConfig, batch: int) -> float:
    """Model FLOPs of one training step (forward + backward) on a (batch, block_size) batch."""
    T = config.block_size
    dense = 6 * matmul_params(config) * batch * T
    attention = 12 * config.n_layer * batch * T * T * config.n_embd
    return float(dense + attention)


def sgemm_rate(repeat: int, n: int = 1024) -> float:
    """NumPy's float32 GEMM speed on an (n, n) @ (n, n) product, in FLOP/s."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    return 2 * n ** 3 / median_time(lambda: a @ b, repeat=repeat, warmup=2)


def tinylora_step(config: GPTConfig, batch: int):
    """A zero-argument function that runs one training step of a fresh tinylora GPT; and the model."""
    model = GPT(config, seed=0)
    step, _ = training_step(model, *batch_of_ids(config, batch), lr=LR, weight_decay=WEIGHT_DECAY)
    return step, model


def torch_gpt(config: GPTConfig, state_dict, torch):
    """tinylora's GPT rebuilt from ``torch.nn`` parts, with parameter names that match its state_dict."""
    nn, TF = torch.nn, torch.nn.functional
    C, H = config.n_embd, config.n_head

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(C, C, bias=config.bias)
                                                                  for _ in range(4))

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = (p(x).view(B, T, H, C // H).transpose(1, 2)
                       for p in (self.q_proj, self.k_proj, self.v_proj))
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hd)
            return self.o_proj(y.transpose(1, 2).reshape(B, T, C))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc_in, self.fc_out = (nn.Linear(C, 4 * C, bias=config.bias),
                                       nn.Linear(4 * C, C, bias=config.bias))

        def forward(self, x):
            return self.fc_out(TF.gelu(self.fc_in(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(C, bias=config.bias), Attention()
            self.ln_2, self.mlp = nn.LayerNorm(C, bias=config.bias), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(config.vocab_size, C), nn.Embedding(config.block_size, C)
            self.blocks = nn.ModuleList(Block() for _ in range(config.n_layer))
            self.ln_f, self.lm_head = (nn.LayerNorm(C, bias=config.bias),
                                       nn.Linear(C, config.vocab_size, bias=False))

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return logits, TF.cross_entropy(logits.flatten(0, 1), targets.flatten())

    model = Model()
    model.load_state_dict({name: torch.from_numpy(array) for name, array in state_dict.items()})
    return model


def torch_training_step(model, x, y, torch, lr: float = LR, weight_decay: float = WEIGHT_DECAY):
    """A zero-argument PyTorch training step (forward, backward, AdamW on the trainable parameters)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=weight_decay)

    def step():
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def torch_step(config: GPTConfig, batch: int, torch, state_dict):
    """One PyTorch training step of the same model, from the same weights, on the same batch."""
    x, y = (torch.from_numpy(a) for a in batch_of_ids(config, batch))
    return torch_training_step(torch_gpt(config, state_dict, torch), x, y, torch)


# ---- running and printing ----------------------------------------------------------------
def _limit_threads(threads: int | None):
    """Use ``threads`` BLAS threads (threadpoolctl) and PyTorch threads; returns the count used."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return threads or os.cpu_count() or 1
    if threads:
        threadpool_limits(threads, user_api="blas")
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return threads or (max(blas) if blas else os.cpu_count() or 1)


def run_case(name: str, repeat: int, warmup: int, torch, gemm_flops: float) -> None:
    label, config, batch = CASES[name]
    ours, model = tinylora_step(config, batch)
    theirs_s = ratio = None
    if torch:
        theirs = torch_step(config, batch, torch, model.state_dict())
        samples = timing_samples({"tinylora": ours, "pytorch": theirs}, repeat, warmup)
        ours_all, theirs_all = samples["tinylora"], samples["pytorch"]
        ours_s, theirs_s = statistics.median(ours_all), statistics.median(theirs_all)
        # per round: robust to drifting load
        ratio = statistics.median(a / b for a, b in zip(ours_all, theirs_all))
    else:
        ours_s = median_time(ours, repeat=repeat, warmup=warmup)
    flops = step_flops(config, batch)
    print(f"\n{label}, batch {batch}: {matmul_params(config) / 1e6:.2f} M matmul params "
          f"({model.num_parameters() / 1e6:.2f} M in all), {flops / 1e9:.2f} GFLOP per step")
    print(f"{'':<12}{'ms/step':>10}{'MFU':>8}")
    print(f"{'tinylora':<12}{ours_s * 1e3:>10.1f}{flops / ours_s / gemm_flops:>8.0%}")
    if theirs_s is None:
        return
    print(f"{'pytorch':<12}{theirs_s * 1e3:>10.1f}{flops / theirs_s / gemm_flops:>8.0%}")
    verdict = "" if name != "bench" else f"   target <= {TARGET:.1f}: {'ok' if ratio <= TARGET else 'MISSED'}"
    print(f"tinylora / pytorch = {ratio:.2f} (median of per-round ratios){verdict}")


def _print_load(threads: int) -> None:
    """Warn when other processes compete for the CPUs.

    Busy-waiting BLAS/OpenMP threads then distort timings.
    """
    if not hasattr(os, "getloadavg"):
        return
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    note = ("" if load + threads <= cpus + 0.5
            else "  (busy machine: expect noisy, slower numbers; try --threads 1)")
    print(f"load average (1 min): {load:.1f} on {cpus} CPUs{note}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tinylora bench gpt", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeat", type=int, default=11,
                        help="timed steps per measurement (the median is shown)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS and PyTorch threads (default: NumPy's BLAS count)")
    parser.add_argument("--quick", action="store_true", help="only the tiny config, 3 samples: a smoke test")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
    threads = _limit_threads(args.threads)
    if torch:
        torch.set_num_threads(threads)
    environment_report()
    repeat, warmup = (3, 1) if args.quick else (args.repeat, 2)
    gemm = sgemm_rate(max(repeat, 5), n=512 if args.quick else 1024)
    print(f"\nthreads: {threads}; NumPy float32 GEMM: {gemm / 1e9:.1f} GFLOP/s (the MFU denominator)")
    _print_load(threads)
    for name in ["tiny"] if args.quick else ["tiny", "bench"]:
        run_case(name, repeat, warmup, torch, gemm)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
