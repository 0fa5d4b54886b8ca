# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · The same code on a GPU (CuPy)
#
# CuPy is a copy of the NumPy API whose arrays live in GPU memory. tinylora never calls
# `numpy` directly inside an op: it asks `get_array_module(array)` for the module that owns
# the array — `numpy` or `cupy` — and calls that module, conventionally named `xp`. So the
# same engine, GPT and LoRA code runs on either device, and moving a model is one call:
# `model.to("cuda")`.
#
# This notebook runs everywhere. **Without a GPU it says so and stays on the CPU**; the
# comparison at the end then shows the CPU only.

# %%
import inspect
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from tinylora import Tensor, get_array_module, is_cuda_available, to_device
from tinylora.data import CharTokenizer, get_batch, load_corpus
from tinylora.models.gpt import GPT, GPTConfig
from tinylora.optim import AdamW

FAST = os.environ.get("TINYLORA_FAST") == "1"
GPU = is_cuda_available()
if GPU:
    import cupy
    gpu_name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    gpu_name = gpu_name.decode() if isinstance(gpu_name, bytes) else gpu_name
    print(f"GPU found: {gpu_name}; CuPy {cupy.__version__}")
else:
    print("NO GPU: CuPy is not installed or sees no CUDA device.\n"
          "Everything below runs on the CPU with NumPy; the GPU timings are skipped.\n"
          'On a machine with an NVIDIA GPU: pip install "tinylora[gpu]"')
print(f"fast mode: {FAST}")

# %% [markdown]
# `FAST` shrinks every loop so the notebook runs in well under a minute (the test suite sets
# `TINYLORA_FAST=1`). Unset it for the full version, which takes a few minutes on a laptop CPU.

# %% [markdown]
# ## 1. Dispatch: which module owns this array?
#
# `get_array_module` looks at the *type* of its arguments. A NumPy array gives `numpy`; a
# CuPy array gives `cupy`. Code written against `xp` then runs on either.

# %%
host = np.linspace(-2, 2, 5, dtype=np.float32)
xp = get_array_module(host)
print("host array  ->", xp.__name__, "->", xp.tanh(host))

if GPU:
    device_array = to_device(host, "cuda")
    xp = get_array_module(device_array)
    print("device array ->", xp.__name__, "->", xp.tanh(device_array), type(device_array))
else:
    try:
        to_device(host, "cuda")
    except RuntimeError as err:
        print("to_device(host, 'cuda') without a GPU raises:\n ", err)

# %% [markdown]
# Every op in the engine follows this pattern. Here are two, printed from the package source:
# each asks the tensor for its `xp` (a property that calls `get_array_module`), and forward
# and backward only use `xp.*`. The bigger fused ops in `tinylora/functional.py` (GELU,
# softmax, attention) do the same.

# %%
print(inspect.getsource(Tensor.tanh))
print(inspect.getsource(Tensor.sigmoid))

# %% [markdown]
# ## 2. Moving a model
#
# `Tensor.to(device)` copies one tensor; `Module.to(device)` moves every parameter in place.
# Move the model **before** creating the optimizer (its state is created where the
# parameters are). Token ids may stay NumPy: the model moves them to its own device.

# %%
device = "cuda" if GPU else "cpu"
t = Tensor([1.0, 2.0, 3.0])
print("tensor:", t.device, "->", t.to(device).device)

model = GPT(GPTConfig.preset("micro"), seed=0).to(device)
print("model parameters live on:", {p.device for p in model.parameters()})
ids = np.zeros((2, 8), dtype=np.int64)
logits, _ = model(ids)
print("logits:", logits.shape, "on", logits.device, "| array type:", type(logits.data).__module__)

# %% [markdown]
# ## 3. Timing a training step
#
# A training step is forward, backward and an AdamW update. We time the same step on each
# available device, after a warm-up step (the first CuPy call on a GPU compiles its kernels).
# On the GPU, reading the loss with `.item()` waits for the GPU to finish, so the clock is
# honest. The small models here are too small to keep a large GPU busy; the gap grows with
# the model (try the "bench" preset). For scale: the full version of this cell on an NVIDIA
# H200 with CuPy 14.2 printed 147 ms per step on its 16 CPU cores and 37.8 ms on the GPU, a
# 3.9x speed-up for the 0.8M-parameter `base` preset at batch 32.

# %%
tokenizer = CharTokenizer()
train_ids = tokenizer.encode(load_corpus("fables", n_chars=50_000))
preset, batch, timed_steps = ("micro", 8, 3) if FAST else ("base", 32, 10)


def seconds_per_step(on_device):
    model = GPT(GPTConfig.preset(preset), seed=0).to(on_device)
    optimizer = AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    times = []
    for step in range(timed_steps + 1):                      # step 0 is the warm-up
        x, y = get_batch(train_ids, batch, model.config.block_size, rng)
        start = time.perf_counter()
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()                                          # waits for the device
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


devices = ["cpu", "cuda"] if GPU else ["cpu"]
timing = {d: seconds_per_step(d) for d in devices}
for d, s in timing.items():
    print(f"{d:4s}: {1e3 * s:8.1f} ms per step  ({preset} preset, batch {batch})")
if GPU:
    print(f"GPU speed-up: {timing['cpu'] / timing['cuda']:.1f}x")
else:
    print("No GPU here: only the CPU was timed.")

fig, ax = plt.subplots(figsize=(4.5, 2.8))
ax.bar(list(timing), [1e3 * s for s in timing.values()], color=["tab:blue", "tab:green"][:len(timing)])
ax.set(ylabel="ms per training step", title=f"{preset} GPT, batch {batch}")
plt.show()

# %% [markdown]
# ## Check yourself
#
# 1. What does `get_array_module` return for a NumPy array, and for a CuPy array?
# 2. Why should the optimizer be created after `model.to("cuda")`?
# 3. Why is the first training step on a GPU left out of the timing?
# 4. Why must the clock wait (here via `loss.item()`) before reading the GPU time?
#
# <details><summary>Answers</summary>
#
# 1. The module `numpy`, and the module `cupy`: the library that owns the array's memory.
# 2. AdamW creates its moment buffers next to the parameters when it first sees them;
#    created before the move, they would stay on the CPU.
# 3. CuPy compiles and caches its kernels on first use; that one-off cost is not the step time.
# 4. GPU calls are asynchronous: Python gets control back before the GPU has finished.
#    Copying the loss to the host forces the wait.
# </details>
