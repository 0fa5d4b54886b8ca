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
# # 03 · LoRA: plug adapters instead of rewiring the house
#
# The base model from notebook 02 knows recipes, but only in a cookbook's layout. We want it
# to write **recipe cards**: the same recipes under `Title:`, `Serves:`, `Ingredients:` and
# `Steps:`.
#
# **Full fine-tuning** is rewiring the whole house: every weight $W$ gets its own change
# $\Delta W$, the same size as $W$. You must store a complete new copy of the model per task,
# and while training, the optimizer keeps two extra numbers per weight.
#
# **LoRA** (Low-Rank Adaptation; Hu et al. 2021, [arXiv:2106.09685](https://arxiv.org/abs/2106.09685))
# leaves the wiring alone and buys cheap **plug adapters**. The weight $W_0$ is **frozen**, and
# the change is forced to be a product of two thin matrices, $\Delta W = B A$ with a small
# *rank* $r$. An adapter is tiny, can be unplugged (the house is untouched), and you can own
# several and swap them.
#
# Plan: the names and shapes; why $B$ starts at zero; the $\alpha/r$ scaling; counting
# parameters (here and for GPT-3 175B); fine-tuning the base model on recipe cards; merging for
# zero extra latency (measured); saving a tiny adapter; swapping two adapters on one base.

# %%
import contextlib
import copy
import os
import tempfile
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

import tinylora
from tinylora import no_grad
from tinylora.data import load_corpus, train_val_split
from tinylora.io import save_model
from tinylora.lora import (
    LoraConfig,
    add_adapter,
    apply_lora,
    count_parameters,
    disable_adapters,
    load_adapter,
    lora_layers,
    merge_and_unload,
    merge_lora,
    print_trainable_parameters,
    save_adapter,
    set_adapter,
    unmerge_lora,
)
from tinylora.pretrained import base_model_path, load_base
from tinylora.train import estimate_loss, fit

FAST = os.environ.get("TINYLORA_FAST") == "1"
STEPS = 10 if FAST else 200          # fine-tuning steps per adapter
BATCH = 8 if FAST else 16
EVAL_BATCHES = 1 if FAST else 8
# tqdm's notebook bar needs ipywidgets; we pass progress=False anyway
warnings.filterwarnings("ignore", message="IProgress not found")


def val_loss(m, ids):
    """Mean loss on the same held-out windows every time, so models are compared on equal text."""
    return estimate_loss(m, ids, batch_size=16, max_batches=EVAL_BATCHES)
np.set_printoptions(precision=4, suppress=True)
print(f"tinylora {tinylora.__version__}; fast mode: {FAST}; steps per fine-tune: {STEPS}")

# %% [markdown]
# `FAST` shrinks every loop so the notebook runs in well under a minute (the test suite sets
# `TINYLORA_FAST=1`). Unset it for the full version, which takes a few minutes on a laptop CPU.

# %% [markdown]
# ## 1. Names and shapes: the paper, the analogy, the code
#
# A `Linear` layer computes $h = W_0 x$ with $W_0$ of shape $d \times k$ (out × in). LoRA adds a
# path through a bottleneck of width $r$:
#
# $$h = W_0 x + \frac{\alpha}{r}\, B A x, \qquad
# A \in \mathbb{R}^{r \times k},\; B \in \mathbb{R}^{d \times r},\; r \ll \min(d, k).$$
#
# $A$ squeezes the input down to $r$ numbers, $B$ expands them back to $d$. The plug-adapter
# picture is often written $\Delta W = W_a W_b$ with $W_a$ of $d \times r$ and $W_b$ of
# $r \times d$ (a square layer, $k = d$). The names map as follows:
#
# | role | paper (column vectors, $h = Wx$) | analogy, $\Delta W = W_a W_b$ | tinylora attribute, shape |
# |---|---|---|---|
# | frozen weight | $W_0$, $d \times k$ | the house wiring $W$, $d \times d$ | `base_layer.weight`, (out, in) |
# | first factor to touch $x$ (down to $r$) | $A$, $r \times k$, random init | $W_b$, $r \times d$ | `lora_A`, (r, in) |
# | second factor (back up to $d$) | $B$, $d \times r$, **zero** init | $W_a$, $d \times r$ | `lora_B`, (out, r) |
# | the update | $\Delta W = BA$, $d \times k$ | $W_a W_b$, $d \times d$ | `delta_weight()` $= \frac{\alpha}{r} BA$, (out, in) |
# | scale | $\alpha / r$ | — | `LoraConfig.scaling` |
#
# So with the paper's column-vector convention, $W_a \leftrightarrow B$ and $W_b \leftrightarrow A$,
# shapes matching exactly. Code that multiplies **row** vectors ($h = xW$, as NumPy batches do)
# transposes everything: there the first factor is $A^\top$ ($k \times r$) and the second
# $B^\top$ ($r \times d$). Whatever the letters, the factor next to the **output** is the one
# that starts at zero. The cell below checks both conventions numerically on a real layer.

# %%
base, tokenizer = load_base()
config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
model = apply_lora(load_base()[0], config, adapter_name="recipes")

layer = model.blocks[0].attn.q_proj                     # a LoraLinear around the frozen Linear
adapter = layer.adapters["recipes"]
print(layer)
print("W0", layer.base_layer.weight.shape, " A", adapter.lora_A.shape, " B", adapter.lora_B.shape,
      " scaling α/r =", adapter.scaling)

rng = np.random.default_rng(0)
A, B, s = adapter.lora_A.data, rng.normal(size=adapter.lora_B.shape).astype(np.float32), adapter.scaling
x_cols = rng.normal(size=(layer.in_features, 5)).astype(np.float32)   # 5 inputs as columns (k, 5)
paper = s * B @ (A @ x_cols)                                          # (d, 5): B A x
W_a, W_b = B, A                                                       # analogy, column vectors
rows = s * (x_cols.T @ A.T) @ B.T                                     # (5, d): x Aᵀ Bᵀ, row vectors
print("paper B·A·x vs analogy W_a·W_b·x :", np.abs(paper - s * W_a @ (W_b @ x_cols)).max())
print("paper vs row-vector x·Aᵀ·Bᵀ      :", np.abs(paper.T - rows).max())

# %% [markdown]
# ## 2. Why $B$ starts at zero (and $A$ does not)
#
# With $B = 0$ the update $BA$ is zero, so **a freshly plugged adapter changes nothing**: the
# model starts exactly where pre-training left it, not at some random perturbation of it.
#
# But both cannot be zero. The gradient of the loss with respect to $B$ is
# $\frac{\partial L}{\partial h}\,(A x)^\top$ and with respect to $A$ it is
# $B^\top \frac{\partial L}{\partial h}\,x^\top$. With $A$ random, $B$'s first gradient is
# non-zero and $B$ moves; once it has moved, $A$'s gradient is non-zero too. Were both zero,
# both gradients would be zero forever. The numbers:

# %%
recipes_text = load_corpus("recipes", n_chars=40_000 if FAST else 100_000)
recipe_train, recipe_val = train_val_split(tokenizer.encode(recipes_text), 0.1)
x_batch = recipe_val[None, :64]
y_batch = recipe_val[None, 1:65]

with no_grad():
    base_logits, _ = base(x_batch)
    lora_logits, _ = model(x_batch)
print("fresh adapter: max |logits - base logits| =", np.abs(lora_logits.data - base_logits.data).max())


def first_gradients(m):
    m.zero_grad()
    _, loss = m(x_batch, y_batch)
    loss.backward()
    a = m.blocks[0].attn.q_proj.adapters["recipes"]
    return np.abs(a.lora_A.grad).max(), np.abs(a.lora_B.grad).max()


print("A random, B = 0: max |dL/dA| = %.2e   max |dL/dB| = %.2e" % first_gradients(model))
stuck = copy.deepcopy(model)
for _, lora_layer in lora_layers(stuck):
    lora_layer.adapters["recipes"].lora_A.data[...] = 0
print("A = 0,    B = 0: max |dL/dA| = %.2e   max |dL/dB| = %.2e   <- stuck forever" % first_gradients(stuck))
del stuck
model.zero_grad()

# %% [markdown]
# ## 3. The scaling $\alpha / r$
#
# The update is multiplied by $\alpha / r$. With $A$'s entries drawn at a fixed scale, $BAx$
# sums over $r$ terms, so its size grows with $r$; dividing by $r$ keeps the update's size
# roughly independent of the rank. That lets you try $r = 4$ or $r = 16$ with the **same
# learning rate**: you tune $\alpha$ once (a common choice is $\alpha = 2r$ at the rank you
# start from) and leave it fixed when you change $r$.

# %%
for r in (1, 2, 4, 8, 16, 32):
    print(f"r = {r:2d}, alpha = 16  ->  scaling alpha/r = {LoraConfig(r=r, lora_alpha=16).scaling:6.3f}")

# %% [markdown]
# ## 4. Counting parameters
#
# Each adapted layer adds $r(k + d)$ parameters instead of $dk$. `print_trainable_parameters`
# prints the line PEFT users know. For this model: 4 layers × 2 projections ($W_q$, $W_v$) ×
# $r (128 + 128)$.

# %%
print_trainable_parameters(model)
n = base.config.n_layer * 2 * config.r * (2 * base.config.n_embd)
print(f"by hand: {base.config.n_layer} layers x 2 matrices x {config.r} x (128 + 128) = {n:,d}")
print(f"full fine-tuning would train all {base.num_parameters():,d}: {base.num_parameters() / n:.0f}x more")

# %% [markdown]
# The saving grows with the model. GPT-3 175B has $d_{model} = 12288$ and 96 layers; each layer
# holds about $12\,d_{model}^2$ weights (attention $4d^2$, MLP $8d^2$). The LoRA paper adapts
# $W_q$ and $W_v$ with $r = 4$ in its GPT-3 experiments and reports a **roughly 10,000×**
# reduction in trainable parameters (and checkpoints of 35 MB instead of 350 GB). Its
# smallest GPT-3 configuration, with 4.7 M trainable parameters, corresponds to $r = 1$.

# %%
d_model, n_layers = 12288, 96
gpt3 = n_layers * 12 * d_model**2 + 50257 * d_model          # blocks + token embedding (BPE vocab)
print(f"GPT-3 weights: {gpt3 / 1e9:.1f} B (the paper's 175B)")
for r in (4, 1):
    lora = n_layers * 2 * r * (d_model + d_model)            # W_q and W_v, each r·(d + d)
    print(f"r = {r}: LoRA on W_q, W_v trains {lora / 1e6:5.1f} M = {175e9 / lora:,.0f}x fewer than 175 B; "
          f"{2 * lora / 2**20:.0f} MiB in fp16")

# %% [markdown]
# ## 5. Fine-tuning on recipe cards
#
# `apply_lora` has frozen every base weight; `fit` trains only what has `requires_grad`, i.e.
# the adapters. For comparison we also run full fine-tuning (every weight trains) on the same
# data for the same number of steps. LoRA gets a higher learning rate (1e-2 against 1e-3), as
# is usual: its few parameters start from zero and must travel further.

# %%
fables_val = tokenizer.encode(load_corpus("fables", n_chars=20_000, seed=1))   # held-out fables
recipe_before = val_loss(base, recipe_val)
lora_history = fit(model, recipe_train, recipe_val, steps=STEPS, batch_size=BATCH, lr=1e-2,
                   warmup_steps=STEPS // 10, eval_every=max(1, STEPS // 5), eval_batches=EVAL_BATCHES,
                   progress=False)
full = load_base()[0]
full_history = fit(full, recipe_train, recipe_val, steps=STEPS, batch_size=BATCH, lr=1e-3,
                   warmup_steps=STEPS // 10, eval_every=max(1, STEPS // 5), eval_batches=EVAL_BATCHES,
                   progress=False)

rows = [("base (no fine-tuning)", base, 0),
        ("LoRA r=8 on q, v", model, count_parameters(model)[0]),
        ("full fine-tuning", full, full.num_parameters())]
card_loss = {name: val_loss(m, recipe_val) for name, m, _ in rows}
print(f"{'model':24s} {'trainable':>10s} {'recipes loss':>13s} {'fables loss':>12s}")
for name, m, trainable in rows:
    print(f"{name:24s} {trainable:10,d} {card_loss[name]:13.3f} {val_loss(m, fables_val):12.3f}")
before, lora_after, full_after = card_loss.values()
print(f"LoRA gets {(before - lora_after) / (before - full_after):.0%} of full fine-tuning's improvement "
      "on the cards")
print(f"seconds: LoRA {lora_history['seconds']:.1f}, full {full_history['seconds']:.1f}")

fig, ax = plt.subplots(figsize=(6.5, 3.5))
ax.axhline(recipe_before, color="grey", ls=":", label="base model")
for label, h in (("LoRA", lora_history), ("full fine-tuning", full_history)):
    ax.plot(h["val_step"], h["val_loss"], "o-", label=label)
ax.set(xlabel="step", ylabel="validation loss on recipe cards",
       title="fine-tuning the base model on recipe cards")
ax.legend()
plt.show()
del full

# %% [markdown]
# What to look for (rounded numbers from a full run; fast mode trains only a few steps):
#
# * **Recipe cards.** Fine-tuning lowers the loss on the cards from about 1.8 (base) to about
#   0.34 with LoRA and about 0.24 with full fine-tuning. So LoRA gets about 93% of full
#   fine-tuning's improvement, with 2% of the trainable weights. That is the base model's
#   knowledge paying off: the recipes are already in its weights, and writing them in a new
#   layout is a small change. Notebook 04 measures how small, and what happens when the
#   target needs knowledge the base does not have.
# * **Fables.** Both fine-tuned models get worse at fables (base about 0.34): the update
#   changes the function on *every* input, not only on recipe cards. But LoRA forgets less
#   (about 0.68 against 0.96) — its low-rank update cannot move the model as far — and it
#   can unplug its adapter to be the base model again, exactly (section 8). Full fine-tuning
#   has overwritten the base.
#
# Now ask both models for a recipe card. The base model has never seen `Title:`, so it
# wanders off, often into a fable; the adapter has learned the layout. (Samples from a
# model this small are rough, and in fast mode the adapter has barely trained.)

# %%
prompt = tokenizer.encode("Title: Lemon")[None]                       # (1, 12)
for name, m in (("base model", base), ("LoRA r=8", model)):
    print(f"--- {name}, prompt 'Title: Lemon' ---")
    print(tokenizer.decode(m.generate(prompt, 80 if FAST else 300, temperature=0.5, seed=0)[0]))

# %% [markdown]
# ## 6. Merging: zero extra latency
#
# During training the adapter is a side path: each adapted layer does its big matmul with
# $W_0$ **plus** two thin ones, $A$ then $B$. For serving, fold the adapter in:
# $W \leftarrow W_0 + \frac{\alpha}{r}BA$. The merged model has exactly the shapes of the base
# model, so it runs at exactly the base model's speed; `unmerge_lora` subtracts it out again.
#
# Below: the median time of a no-grad forward pass (batch 8, 64 tokens) for the base model,
# the LoRA model unmerged, and a merged copy. They are timed in interleaved rounds, so that
# background load hits all three alike, and with NumPy's matrix library held to one thread
# (if `threadpoolctl` is installed), which makes timings far steadier on a shared machine.

# %%
merged = merge_lora(copy.deepcopy(model))
x_time = np.stack([recipe_val[i * 64:(i + 1) * 64] for i in range(8)])   # (8, 64)
with no_grad():
    diff = np.abs(merged(x_time)[0].data - model(x_time)[0].data).max()
print(f"merged vs unmerged: max |logit difference| = {diff:.2e}")

try:
    from threadpoolctl import threadpool_limits
except ImportError:                                                         # timings just get noisier
    def threadpool_limits(limits):
        return contextlib.nullcontext()

contenders = {"base": base, "LoRA unmerged": model, "LoRA merged": merged}
times = {name: [] for name in contenders}
with no_grad(), threadpool_limits(1):
    for m in contenders.values():
        m(x_time)                                                           # warm-up
    for _ in range(15 if FAST else 60):
        for name, m in contenders.items():
            start = time.perf_counter()
            m(x_time)
            times[name].append(time.perf_counter() - start)
median_ms = {name: 1e3 * np.median(t) for name, t in times.items()}
for name, ms in median_ms.items():
    print(f"{name:14s} median {ms:7.2f} ms ({ms / median_ms['base']:.2f}x base)   "
          f"fastest {1e3 * min(times[name]):7.2f} ms")

fig, ax = plt.subplots(figsize=(5.5, 2.8))
ax.bar(list(median_ms), list(median_ms.values()), color=["tab:grey", "tab:orange", "tab:green"])
ax.set(ylabel="median forward time (ms)", title="inference latency, batch 8 x 64 tokens")
plt.show()

# %% [markdown]
# Merged and base should agree within timing noise; the unmerged model pays for its side path.
# Here that cost is only a few percent, because $r = 8$ is small next to 128 and only 8 of the
# model's 25 linear layers carry an adapter; in a large model served one request at a time,
# the extra small matmuls per layer weigh more. `merge_and_unload` goes one step further and
# puts plain `Linear` layers back, so the result is an ordinary GPT with no LoRA code in it.

# %%
before = type(merged.blocks[0].attn.q_proj).__name__
unloaded = merge_and_unload(merged)                     # a plain GPT again, adapter folded in
with no_grad():
    diff = np.abs(unloaded(x_time)[0].data - model(x_time)[0].data).max()
print(f"merge_and_unload: q_proj {before} -> {type(unloaded.blocks[0].attn.q_proj).__name__}; "
      f"max |logit difference| from the LoRA model = {diff:.2e}")
W0 = base.blocks[0].attn.q_proj.weight.data
restored = unmerge_lora(merge_lora(model)).blocks[0].attn.q_proj.base_layer.weight.data
print("merge then unmerge: max |W - W0| =", np.abs(restored - W0).max())

# %% [markdown]
# ## 7. Saving a tiny adapter
#
# Only the adapter needs saving: `save_adapter` writes `adapter_config.json` (the rank,
# targets, and the shape of every adapted layer) and `adapter_model.safetensors` (the $A$
# and $B$ matrices). Compare with a full checkpoint of the model.

# %%
workdir = tempfile.mkdtemp(prefix="tinylora-03-")
adapter_dir = os.path.join(workdir, "recipes-adapter")
save_adapter(model, adapter_dir, adapter_name="recipes")
adapter_bytes = {name: os.path.getsize(os.path.join(adapter_dir, name))
                 for name in sorted(os.listdir(adapter_dir))}
full_path = os.path.join(workdir, "full_model.npz")
save_model(base, full_path)
full_bytes = os.path.getsize(full_path)
for name, size in adapter_bytes.items():
    print(f"{name:28s} {size:10,d} bytes")
print(f"{'full checkpoint (.npz)':28s} {full_bytes:10,d} bytes  "
      f"(shipped base: {os.path.getsize(base_model_path()):,d})")
print(f"the adapter is {full_bytes / sum(adapter_bytes.values()):.0f}x smaller")

reloaded = load_adapter(load_base()[0], adapter_dir, adapter_name="recipes")
with no_grad():
    same = np.abs(reloaded(x_time)[0].data - model(x_time)[0].data).max()
print("reloaded adapter on a fresh base model: max |logit difference| =", same)

# %% [markdown]
# ## 8. Two adapters, one base
#
# One frozen base, many plugs: add an `arithmetic` adapter next to `recipes`, train it
# (`set_adapter` makes it the active and only trainable one), then swap between them.
# `disable_adapters()` unplugs everything for a block of code, giving the base model back.

# %%
arithmetic_text = load_corpus("arithmetic", n_chars=40_000 if FAST else 100_000)
arith_train, arith_val = train_val_split(tokenizer.encode(arithmetic_text), 0.1)
add_adapter(model, "arithmetic", LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], seed=1))
set_adapter(model, "arithmetic")
print_trainable_parameters(model)
arith_history = fit(model, arith_train, arith_val, steps=STEPS, batch_size=BATCH, lr=1e-2,
                    warmup_steps=STEPS // 10, progress=False)
print(f"arithmetic adapter trained in {arith_history['seconds']:.1f} s")

# %%
evals = {"fables": fables_val, "recipes": recipe_val, "arithmetic": arith_val}
table = {}
with disable_adapters(model):
    table["adapters disabled"] = [val_loss(model, ids) for ids in evals.values()]
for name in ("recipes", "arithmetic"):
    set_adapter(model, name)
    table[f"adapter '{name}'"] = [val_loss(model, ids) for ids in evals.values()]

fig, ax = plt.subplots(figsize=(7, 3.2))
grid = np.array(list(table.values()))
ax.imshow(grid, cmap="viridis_r")
ax.set(xticks=range(len(evals)), xticklabels=list(evals), xlabel="evaluated on", yticks=range(len(table)),
       yticklabels=list(table), title="validation loss (lower is better)")
for (i, j), value in np.ndenumerate(grid):
    ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > grid.mean() else "black")
plt.show()

for name, prompt in (("recipes", "Title: Lemon"), ("arithmetic", "23+45=")):
    set_adapter(model, name)
    ids = tokenizer.encode(prompt)[None]
    print(f"--- adapter {name!r}, prompt {prompt!r}:")
    print(tokenizer.decode(model.generate(ids, 60, temperature=0, seed=0)[0]))
with disable_adapters(model):
    print("--- adapters disabled, prompt '23+45=':")
    print(tokenizer.decode(model.generate(tokenizer.encode("23+45=")[None], 60, temperature=0)[0]))

# %% [markdown]
# Each row is one plug in the same socket: the base weights never changed. (In fast mode the
# adapters train for only a few steps, so the differences are smaller; run the full notebook
# to see them clearly.)
#
# ## Check yourself
#
# 1. An adapted layer has $W_0$ of shape (out, in) = (128, 128) and $r = 8$. How many parameters
#    does its adapter add?
# 2. Why is $B$ initialised to zero? What would go wrong if $A$ were zero as well?
# 3. If you double $r$ and keep $\alpha$ fixed, what happens to the scaling, and why is that useful?
# 4. Why does a merged LoRA model run exactly as fast as the base model?
# 5. Why can two adapters share one base model, but two *merged* models cannot?
# 6. In the plug-adapter notation $\Delta W = W_a W_b$ ($W_a$: $d \times r$), which paper matrix is $W_a$?
#
# <details><summary>Answers</summary>
#
# 1. $r(\text{in} + \text{out}) = 8 \cdot 256 = 2{,}048$, against $16{,}384$ in $W_0$.
# 2. So that the fresh adapter leaves the model's output unchanged. If $A$ were zero too,
#    both gradients ($\propto Ax$ for $B$, $\propto B^\top$ for $A$) would be zero and
#    training could never start.
# 3. $\alpha/r$ halves, which roughly cancels the larger sum over $r$ terms in $BAx$: the
#    update keeps its size, so the learning rate need not be retuned.
# 4. Merging stores $W_0 + \frac{\alpha}{r}BA$ in the base weight; the layer is a plain
#    matmul of the same shape as before, with no side path.
# 5. Merging overwrites the shared weight; unmerged adapters leave it untouched and only
#    the small $A, B$ are swapped.
# 6. $B$ ($d \times r$, the zero-initialised factor next to the output) in the paper's
#    column-vector convention; with row vectors it is $A^\top$'s place that $W_a$ takes.
# </details>
