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

from tinylora import Tensor, asnumpy, backend, get_array_module, is_cuda_available, to_device
from tinylora.data import CharTokenizer, get_batch, load_corpus
from tinylora.fake_cupy import FakeCupyArray, calls, fake_cupy
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
# **Running time, measured** on the test machine (2 CPU cores shared with other jobs, load about
# 20; no GPU): 16 s in fast mode (`TINYLORA_FAST=1`, which the test suite sets: the micro
# preset, 3 timed steps) and 74 s in full mode (the base preset, 10 steps). The kernel used 3.5 s
# and 17 s of CPU time, about what the two modes take on a laptop with a free core. (With a
# GPU, section 3 also times the GPU step; that was not measured here.)

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
# ## 4. Without a GPU: what the strict fake CuPy catches
#
# Most mistakes that break GPU code do not need a GPU to be found. Real CuPy has three rules
# that NumPy code breaks without noticing:
#
# 1. **No mixing.** A device array and a host (NumPy) array cannot meet in one operation:
#    the data live in two different memories, and CuPy raises instead of guessing.
# 2. **No implicit transfers.** `np.asarray(device_array)` would be a hidden copy from GPU
#    memory to the host, which is slow and waits for the GPU to finish; CuPy refuses it. A
#    copy must be asked for: `.get()` or `asnumpy`.
# 3. **`np.*` is the wrong module.** Op code must call the module that owns its inputs,
#    `xp = get_array_module(x)`. Real CuPy forwards some NumPy calls (its ufuncs), but not
#    all of them, and a forwarded call on one machine is a crash or a hidden host copy on
#    another.
#
# `tinylora.fake_cupy` is NumPy behind a wall that enforces all three, and stricter on the
# third: it refuses every `np.*` function on its arrays. The test suite runs every engine
# test on it (`tests/conftest.py`), so a stray `np.` in op code fails on any laptop.
# Registering it makes `"cuda"` mean the fake device for a while:

# %%
backend.register_device_backend(FakeCupyArray, fake_cupy)     # "cuda" is now the fake device
try:
    device_x = to_device(np.array([1.0, -2.0, 3.0], dtype=np.float32), "cuda")
    print("on the fake device:", type(device_x).__name__, "module", get_array_module(device_x).__name__)
    attempts = {
        "1. mixing:   device + host array": lambda: device_x + np.ones(3, dtype=np.float32),
        "2. implicit: np.asarray(device)": lambda: np.asarray(device_x),
        "3. np.* on a device array: np.exp": lambda: np.exp(device_x),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            print(f"{name:36s} -> allowed")
        except TypeError as err:
            print(f"{name:36s} -> {type(err).__name__}: {str(err)[:70]}")
    xp = get_array_module(device_x)
    print("the right way: xp.exp(x) =", xp.exp(device_x), "| explicit copy to the host:", device_x.get())
finally:
    backend.unregister_device_backend(FakeCupyArray)

# %% [markdown]
# The same wall catches a mistake inside an op. Below, two versions of `tanh` defined with
# the public op API (`Tensor.from_op`, notebook 01): one takes its module from the input,
# the other calls `np.tanh` directly. On the CPU both give the same numbers, so a CPU-only
# test cannot tell them apart; on the fake device the second one fails, at the line that is
# wrong, with no GPU anywhere.

# %%
def tanh_xp(t):
    xp = get_array_module(t.data)
    y = xp.tanh(t.data)
    return Tensor.from_op(y, (t,), lambda g: (g * (1 - y * y),))


def tanh_np(t):                                    # the mistake: np. in op code
    y = np.tanh(t.data)
    return Tensor.from_op(y, (t,), lambda g: (g * (1 - y * y),))


host_t = Tensor(np.array([0.5, -1.0], dtype=np.float32), requires_grad=True)
print("CPU:   xp version", tanh_xp(host_t).data, "  np version", tanh_np(host_t).data)
backend.register_device_backend(FakeCupyArray, fake_cupy)
try:
    device_t = host_t.to("cuda")
    print("fake device, xp version:", type(tanh_xp(device_t).data).__name__)
    try:
        tanh_np(device_t)
    except TypeError as err:
        print("fake device, np version:", type(err).__name__, "-", str(err)[:80])

    # A whole training step of the micro GPT on the fake device, counting what ran there.
    calls.clear()
    fake_model = GPT(GPTConfig.preset("micro"), seed=0).to("cuda")
    fake_optimizer = AdamW(fake_model.parameters(), lr=1e-3)
    x, y = get_batch(train_ids, 4, fake_model.config.block_size, np.random.default_rng(0))   # host ids
    _, loss = fake_model(x, y)
    loss.backward()
    fake_optimizer.step()
    print(f"one training step on the fake device: loss {loss.item():.3f}; {calls['matmul']} matmuls "
          f"among {sum(calls.values()):,d} device calls in all")
    print("parameters still on the device:", {p.device for p in fake_model.parameters()},
          "| checkpoint arrays are host NumPy:", type(asnumpy(fake_model.lm_head.weight.data)).__name__)
finally:
    backend.unregister_device_backend(FakeCupyArray)

# %% [markdown]
# The step runs because every op of the engine, the GPT and AdamW takes its module from its
# inputs; the token ids start on the host, and the model moves them to its device itself.
# The counter `calls` is how the tests prove that work was *not* done, for
# example that a frozen weight's gradient is never formed. What the fake cannot show is
# speed, memory or the GPU's own numerics: those need the real device (section 3).
#
# ## Check yourself
#
# 1. What does `get_array_module` return for a NumPy array, and for a CuPy array?
# 2. Why should the optimizer be created after `model.to("cuda")`?
# 3. Why is the first training step on a GPU left out of the timing?
# 4. Why must the clock wait (here via `loss.item()`) before reading the GPU time?
# 5. A test of a new op passes on the CPU. Why can it still fail on a GPU, and how does the
#    fake CuPy find that on a laptop?
#
# <details><summary>Answers</summary>
#
# 1. The module `numpy`, and the module `cupy`: the library that owns the array's memory.
# 2. AdamW creates its moment buffers next to the parameters when it first sees them;
#    created before the move, they would stay on the CPU.
# 3. CuPy compiles and caches its kernels on first use; that one-off cost is not the step time.
# 4. GPU calls are asynchronous: Python gets control back before the GPU has finished.
#    Copying the loss to the host forces the wait.
# 5. The op may call `np.*` on its inputs, or mix in a host array; on the CPU both are
#    NumPy, so nothing shows. The fake CuPy refuses mixing, implicit conversion and `np.*`
#    on its arrays, so the same test run on it fails at the wrong line.
# </details>
