"""GPU check and benchmark: the same model and data on the CPU (NumPy) and the GPU (CuPy).

    python benchmarks/gpu.py            # needs CuPy and an NVIDIA GPU: pip install -e ".[gpu]"

1. Agreement: one forward and backward of the bench GPT with identical weights and batch on
   both devices; the largest loss and gradient differences (float32).
2. Speed: median training-step time (forward, backward, AdamW) of full fine-tuning and of LoRA
   (r=8 on q_proj, v_proj) on each device, and LoRA/full on each.
3. The domain task end to end on the GPU: the shipped base model, LoRA r=4 on q_proj, v_proj,
   100 steps on the recipe cards; its held-out loss next to the CPU's.
Checkpoints and adapters are written as host NumPy whatever the device, so the run also saves
the GPU adapter and loads it on the CPU.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np


def synchronize():
    import cupy
    cupy.cuda.Device().synchronize()


def median_ms(fn, repeat=15, warmup=3, sync=False) -> float:
    """Median milliseconds of ``fn()``; with ``sync``, each call also waits for the GPU to finish."""
    from tinylora.bench.common import median_time

    return 1e3 * median_time((lambda: (fn(), synchronize())) if sync else fn, repeat, warmup)


def agreement() -> None:
    from tinylora import lora
    from tinylora.backend import asnumpy
    from tinylora.bench.common import batch_of_ids
    from tinylora.models import GPT, GPTConfig

    config = GPTConfig.preset("bench")
    x, y = batch_of_ids(config, 16)
    results = {}
    for device in ("cpu", "cuda"):
        model = lora.apply_lora(GPT(config, seed=0), lora.LoraConfig(r=8, init_lora_weights=False))  # B != 0
        model.to(device)
        _, loss = model(x, y)
        loss.backward()
        results[device] = (loss.item(),
                           {n: asnumpy(p.grad) for n, p in model.named_parameters() if p.grad is not None})
    (loss_cpu, grads_cpu), (loss_gpu, grads_gpu) = results["cpu"], results["cuda"]
    worst = max(float(np.abs(grads_cpu[n] - grads_gpu[n]).max() / (np.abs(grads_cpu[n]).max() + 1e-12))
                for n in grads_cpu)
    print(f"agreement (bench GPT, LoRA r=8, float32): loss cpu {loss_cpu:.6f} gpu {loss_gpu:.6f}, "
          f"largest relative gradient difference {worst:.2e} over {len(grads_cpu)} LoRA tensors")


def speed() -> None:
    from tinylora.bench.common import batch_of_ids, training_step
    from tinylora.bench.lora import make_model
    from tinylora.models import GPTConfig

    config = GPTConfig.preset("bench")
    x, y = batch_of_ids(config, 16)
    print("training step, bench GPT (C=256, L=4, T=128, batch 16), median ms")
    print(f"{'device':8s} {'full':>9s} {'LoRA':>9s} {'LoRA/full':>10s}")
    for device in ("cpu", "cuda"):
        times = {}
        for mode in ("full", "lora"):
            model = make_model(config, mode).to(device)
            step, _ = training_step(model, x, y)
            times[mode] = median_ms(step, repeat=11 if device == "cpu" else 31, sync=device == "cuda")
        print(f"{device:8s} {times['full']:9.2f} {times['lora']:9.2f} {times['lora'] / times['full']:10.3f}")


def domain_task() -> None:
    from tinylora import load_base, lora
    from tinylora.experiments.tasks import domain_splits
    from tinylora.train import estimate_loss, fit

    train_ids, val_ids = domain_splits("recipes")
    losses = {}
    for device in ("cpu", "cuda"):
        model, _ = load_base(device=device)
        base = estimate_loss(model, val_ids, batch_size=16, max_batches=6, block_size=64)
        lora.apply_lora(model, lora.LoraConfig(r=4, lora_alpha=16, init_lora_weights="kaiming", seed=0))
        start = time.perf_counter()
        fit(model, train_ids, steps=100, batch_size=16, block_size=64, lr=2e-2, warmup_steps=10, seed=0,
            progress=False)
        seconds = time.perf_counter() - start
        losses[device] = estimate_loss(model, val_ids, batch_size=16, max_batches=6, block_size=64)
        print(f"domain task on {device}: held-out loss base {base:.4f} -> LoRA r=4 {losses[device]:.4f} "
              f"(100 steps in {seconds:.1f} s)")
        if device == "cuda":
            with tempfile.TemporaryDirectory() as folder:
                lora.save_adapter(model, folder)
                on_cpu = lora.load_adapter(load_base()[0], folder)
                reloaded = estimate_loss(on_cpu, val_ids, batch_size=16, max_batches=6, block_size=64)
            print(f"the GPU-trained adapter saved and loaded on the CPU: held-out loss {reloaded:.4f}")


def main() -> int:
    from tinylora import is_cuda_available

    if not is_cuda_available():
        print("no GPU: this benchmark needs CuPy and an NVIDIA GPU (pip install -e \".[gpu]\")")
        return 1
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    print(f"GPU: {props['name'].decode()}, CuPy {cupy.__version__}, NumPy {np.__version__}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    agreement()
    speed()
    domain_task()
    return 0


if __name__ == "__main__":
    sys.exit(main())
