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
from tinylora import functional as F
from tinylora import no_grad
from tinylora.bench.common import median_times, timing_samples, training_step
from tinylora.data import get_batch, load_corpus, make_arithmetic_problems, score_arithmetic, train_val_split
from tinylora.experiments.tasks import planted_update
from tinylora.io import save_model
from tinylora.lora import (
    LoraConfig,
    LoraLinear,
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
from tinylora.nn import Linear
from tinylora.optim import AdamW
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
# **Running time, measured** on the test machine (2 CPU cores shared with other jobs, load about
# 20): 3.5 minutes in fast mode (`TINYLORA_FAST=1`, which the test suite sets: 10 fine-tuning
# steps per adapter) and 25 minutes in full mode (200 steps per adapter, three fine-tunings).
# The kernel used 40 s and 8 minutes of CPU time, about what the two modes take on a laptop
# with a free core.

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
# picture writes the same update as $\Delta W = W_a W_b$, with $W_a$ of $d \times r$ and $W_b$
# of $r \times d$ (a square layer, $k = d$), and it multiplies **column vectors**, like the
# paper: $h = (W + W_a W_b)\,x$. So $x$ meets $W_b$ first, and the names map as follows:
#
# | role | paper (column vectors, $h = Wx$) | picture, $h = (W + W_a W_b)x$ | tinylora attribute, shape |
# |---|---|---|---|
# | frozen weight | $W_0$, $d \times k$ | the house wiring $W$, $d \times d$ | `base_layer.weight`, (out, in) |
# | first factor to touch $x$ (down to $r$) | $A$, $r \times k$, random init | $W_b$, $r \times d$, random init | `lora_A`, (r, in) |
# | second factor (back up to $d$) | $B$, $d \times r$, **zero** init | $W_a$, $d \times r$, **zero** init | `lora_B`, (out, r) |
# | the update | $\Delta W = BA$, $d \times k$ | $W_a W_b$, $d \times d$ | `delta_weight()` $= \frac{\alpha}{r} BA$, (out, in) |
# | scale | $\alpha / r$ | — | `LoraConfig.scaling` |
#
# The convention decides which factor starts at zero. The rule is: the factor that touches
# $x$ first is random and the one next to the **output** is zero (section 2 says why). With
# column vectors that is $W_a$, written first. Code that multiplies **row** vectors
# ($h = xW^\top$, as NumPy batches do, and as tinylora does inside `F.lora_linear`) reads the
# same product the other way round: $x A^\top B^\top$, first factor $A^\top$ ($k \times r$,
# random), second $B^\top$ ($r \times d$, zero). Someone who reads $\Delta W = W_a W_b$ in the
# row-vector convention ($h = x(W + W_a W_b)$) must therefore zero $W_b$, not $W_a$.
#
# For a square layer both readings give factors of the right shapes, so shapes cannot tell
# them apart; the output can. The cell below gives the adapter a random (non-zero) $B$, runs
# the **library's** layer, and compares what the adapter adds to the output,
# `layer(x) - layer.base_layer(x)`, with each reading of the picture. Only the right mapping
# reproduces it.

# %%
base, tokenizer = load_base()
config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
model = apply_lora(load_base()[0], config, adapter_name="recipes")

layer = model.blocks[0].attn.q_proj                     # a LoraLinear around the frozen Linear
adapter = layer.adapters["recipes"]
print(layer)
print("W0", layer.base_layer.weight.shape, " A", adapter.lora_A.shape, " B", adapter.lora_B.shape,
      " scaling α/r =", adapter.scaling)
print(f"fresh adapter: max |B| = {np.abs(adapter.lora_B.data).max()}, max |A| = {np.abs(adapter.lora_A.data).max():.3f}")

rng = np.random.default_rng(0)
trained = copy.deepcopy(layer)                         # a copy whose B is random, as after training
trained.adapters["recipes"].lora_B.data[...] = rng.normal(size=adapter.lora_B.shape)
A, B, s = trained.adapters["recipes"].lora_A.data, trained.adapters["recipes"].lora_B.data, adapter.scaling
x_rows = rng.normal(size=(5, layer.in_features)).astype(np.float32)  # 5 inputs as rows (5, k)
with no_grad():
    added = (trained(x_rows) - trained.base_layer(x_rows)).data       # (5, d): what the adapter adds
x_cols = x_rows.T                                                     # the same inputs as columns (k, 5)
readings = {"columns, W_a = B,   W_b = A   (the picture)": (s * B @ (A @ x_cols)).T,
            "columns, W_a = Aᵀ,  W_b = Bᵀ  (swapped)": (s * A.T @ (B.T @ x_cols)).T,
            "rows,    x·W_a·W_b with W_a = Aᵀ, W_b = Bᵀ": s * (x_rows @ A.T) @ B.T}
scale = np.abs(added).max()
for name, prediction in readings.items():
    print(f"{name}: max |difference| / max |added| = {np.abs(prediction - added).max() / scale:.1e}")

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
stuck = apply_lora(load_base()[0], config, adapter_name="recipes")   # the same adapter, then A = 0
for _, lora_layer in lora_layers(stuck):
    lora_layer.adapters["recipes"].lora_A.data[...] = 0
print("A = 0,    B = 0: max |dL/dA| = %.2e   max |dL/dB| = %.2e   <- stuck forever" % first_gradients(stuck))
del stuck
model.zero_grad()

# %% [markdown]
# ## 3. The scaling $\alpha / r$
#
# The update is multiplied by $s = \alpha / r$. What does that do to its size?
#
# * **At initialisation: nothing.** $B = 0$, so $s\,BA = 0$ whatever $s$ is.
# * **After the first step.** Under Adam (AdamW, as `fit` uses) the first step moves every
#   parameter by about the learning rate, whatever the size of its gradient
#   ($\hat m / \sqrt{\hat v} = g / |g| = \pm 1$). $A$ gets no gradient at step 0 ($B = 0$), so
#   only $B$ moves, by $\pm\text{lr}$ per entry, and the output changes by
#   $s\,\Delta B\,(Ax)$: each output is a sum of $r$ terms $\Delta B_{oi}\,(Ax)_i$.
# * **How big is $Ax$?** That depends on the init. tinylora's default, `"gaussian"`, draws
#   $A \sim \mathcal N(0, 1/r^2)$: its scale *shrinks* with $r$, so each $(Ax)_i$ has size
#   $\lVert x \rVert / r$. `"kaiming"` draws $A \sim U(\pm 1/\sqrt{k})$, a scale that does not
#   depend on $r$.
# * **A sum of $r$ independent terms grows like $\sqrt r$**, not like $r$ (their signs partly
#   cancel; only terms that all share one sign add up to $r$ times one term).
#
# Put together, the first step changes $\Delta W$ by about
# $s \cdot \text{lr} \cdot \sqrt r \cdot \text{scale}(A)$. With $s = \alpha/r$ that is
# $\alpha\,\text{lr}\, r^{-3/2}$ under the gaussian init and $\alpha\,\text{lr}\, r^{-1/2}$
# under kaiming: **$\alpha/r$ does not keep the update's size constant**; it over-corrects,
# and larger ranks start more slowly. rsLoRA (Kalajdzievski 2023,
# [arXiv:2312.03732](https://arxiv.org/abs/2312.03732)) divides by $\sqrt r$ instead, which
# exactly cancels the $\sqrt r$ of the sum when $A$'s scale does not depend on $r$ (kaiming);
# with the gaussian init the $1/r$ of $A$ still remains.
#
# The cell measures it: one AdamW step on a 128 × 128 layer (a mean-squared error to a random
# target, a batch of 256 inputs), for each rank, init and scaling rule; then the exponent
# $p$ of $\lVert \Delta W \rVert_F \propto r^{p}$ fitted across the ranks.

# %%
for r in (1, 2, 4, 8, 16, 32):
    print(f"r = {r:2d}, alpha = 16  ->  scaling alpha/r = {LoraConfig(r=r, lora_alpha=16).scaling:6.3f}"
          f"   alpha/sqrt(r) = {LoraConfig(r=r, lora_alpha=16, use_rslora=True).scaling:6.3f}")

terms = np.random.default_rng(0).normal(size=(10_000, 64))            # 10,000 sums of up to 64 terms
for r in (1, 4, 16, 64):
    print(f"sum of {r:2d} independent N(0, 1) terms: std {terms[:, :r].sum(axis=1).std():5.2f}"
          f"  (√r = {np.sqrt(r):.0f}; r = {r})")

d_toy = 128
toy_rng = np.random.default_rng(0)
x_toy = toy_rng.normal(size=(256, d_toy)).astype(np.float32)          # (256, 128)
y_toy = toy_rng.normal(size=(256, d_toy)).astype(np.float32)          # (256, 128) a random target
toy_base = Linear(d_toy, d_toy, rng=np.random.default_rng(1))


def toy_lora(r, init="gaussian", rslora=False, alpha=16, base_layer=toy_base):
    """A LoraLinear on the toy layer with one adapter, and its A, B."""
    toy = LoraLinear(base_layer)
    toy.add_adapter("toy", LoraConfig(r=r, lora_alpha=alpha, init_lora_weights=init, use_rslora=rslora),
                    np.random.default_rng(2))
    toy.active_adapter = "toy"
    return toy, toy.adapters["toy"]


def first_adam_step(r, init, rslora, lr=1e-3):
    """‖ΔW‖_F after one AdamW step from a fresh adapter, and ‖A x‖ / ‖x‖ at init."""
    toy, a = toy_lora(r, init, rslora)
    Ax = np.linalg.norm(x_toy @ a.lora_A.data.T) / np.linalg.norm(x_toy)
    optimizer = AdamW([a.lora_A, a.lora_B], lr=lr, weight_decay=0.0)
    ((toy(x_toy) - y_toy) ** 2).mean().backward()
    optimizer.step()
    return np.linalg.norm(toy.delta_weight()), Ax


ranks = (1, 4, 16, 64) if FAST else (1, 2, 4, 8, 16, 32, 64)
first_step = {}
print(f"\n{'init':9s} {'scaling':8s}" + "".join(f"{'r=' + str(r):>8s}" for r in ranks) + "   exponent p")
for init in ("gaussian", "kaiming"):
    for rslora in (False, True):
        sizes = [first_adam_step(r, init, rslora)[0] for r in ranks]
        first_step[init, rslora] = np.polyfit(np.log(ranks), np.log(sizes), 1)[0]
        print(f"{init:9s} {'α/√r' if rslora else 'α/r':8s}" + "".join(f"{v:8.4f}" for v in sizes)
              + f"   {first_step[init, rslora]:+.2f}")
for init in ("gaussian", "kaiming"):
    print(f"‖A x‖ / ‖x‖ at init, {init:8s}:", "  ".join(f"r={r}: {first_adam_step(r, init, False)[1]:.3f}"
                                                       for r in (1, 8, 64)))

# %% [markdown]
# The exponents are the ones the argument predicts: about $-1.5$ and $-0.5$ for $\alpha/r$,
# $-1$ and $0$ for $\alpha/\sqrt r$. Only rsLoRA with a rank-independent init keeps the first
# step's size the same at every rank. The LoRA paper's own claim is more modest: with Adam,
# tuning $\alpha$ is roughly the same as tuning the learning rate, so one fixes $\alpha$ and
# does not retune it when trying another $r$ (Hu et al., Section 4.1). The measurement says
# what that costs: at a fixed learning rate a larger rank takes smaller steps in $\Delta W$.
#
# Does that matter after more than one step? Below, the toy layer must learn a planted
# rank-4 update $\Delta W^*$ (inputs and target as above, target $= (W_0 + \Delta W^*)x$):
# 20 AdamW steps at one learning rate, for each rank, under each rule (default init). The
# number is the loss after training relative to the loss before (1 = nothing learned).

# %%
TOY_STEPS = 10 if FAST else 20
planted_toy = planted_update((d_toy, d_toy), 4, 1.0, seed=0).astype(np.float32)  # (128, 128), rank 4
y_planted = x_toy @ (toy_base.weight.data + planted_toy).T + toy_base.bias.data   # (256, 128)


def train_toy(r, alpha, lr, rslora=False, steps=TOY_STEPS, report=()):
    """Relative loss after ``steps`` AdamW steps on the planted toy (and after each step in ``report``)."""
    toy, a = toy_lora(r, rslora=rslora, alpha=alpha)
    optimizer = AdamW([a.lora_A, a.lora_B], lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps + 1):
        loss = ((toy(x_toy) - y_planted) ** 2).mean()
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    relative = np.array(losses) / losses[0]
    return [relative[s] for s in report] if report else relative[-1]


print(f"relative loss after {TOY_STEPS} steps, alpha = 16, lr = 1e-3:")
rank_speed = {}
for rslora in (False, True):
    rank_speed[rslora] = [train_toy(r, 16, 1e-3, rslora) for r in (4, 16, 64)]
    print(f"  {'α/√r' if rslora else 'α/r ':5s}", "  ".join(f"r={r}: {v:.3f}" for r, v in
                                                    zip((4, 16, 64), rank_speed[rslora])))

# %% [markdown]
# With $\alpha/r$, going from $r = 16$ to $r = 64$ buys nothing in this budget: four times the
# capacity, and each step smaller. With $\alpha/\sqrt r$ the larger ranks learn faster, and
# $r = 64$ is far ahead. That is rsLoRA's point: under $\alpha/r$ large ranks learn
# more slowly, so their extra capacity goes unused unless the learning rate is raised with $r$.
#
# ### $\alpha$ against the learning rate under Adam
#
# Under Adam a step moves $B$ by about lr per entry whatever the gradient's scale, and the
# output moves by $s\,\Delta B\,Ax$: to first order the change is proportional to
# $\alpha \cdot \text{lr}$. So $\alpha$ acts as a second learning rate for the update, and
# the grid below (rank 8, the planted toy) should be nearly constant along its diagonals,
# where $\alpha \cdot \text{lr}$ is constant. The left grid is after 5 steps, the right after
# all of them.

# %%
alphas, lrs = (2, 8, 32, 128), (1e-4, 4e-4, 1.6e-3, 6.4e-3)       # both in factors of 4
early = 5
grids = np.array([[train_toy(8, a, lr, report=(early, TOY_STEPS)) for lr in lrs] for a in alphas])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, k, steps in zip(axes, (0, 1), (early, TOY_STEPS)):
    shown = ax.imshow(grids[:, :, k], cmap="viridis_r", vmin=0, vmax=1)
    ax.set(xticks=range(len(lrs)), xticklabels=[f"{lr:g}" for lr in lrs], xlabel="learning rate",
           yticks=range(len(alphas)), yticklabels=alphas, ylabel="α (r = 8)",
           title=f"relative loss after {steps} AdamW steps")
    for (i, j), value in np.ndenumerate(grids[:, :, k]):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.5 else "black")
    fig.colorbar(shown, ax=ax, label="loss / initial loss")
plt.tight_layout()
plt.show()
diagonal = [grids[i, len(lrs) - 1 - i] for i in range(len(alphas))]    # α·lr = 0.0128 throughout
print("along the diagonal α·lr = 0.0128 (α = 2 ... 128):",
      "after 5 steps", np.round([d[0] for d in diagonal], 3), "; at the end", np.round([d[1] for d in diagonal], 3))
print(f"one row, α = 8, lr from {lrs[0]:g} to {lrs[-1]:g} after 5 steps:", np.round(grids[1, :, 0], 3))

# %% [markdown]
# After 5 steps the diagonal is nearly flat while a row spans a wide range: $\alpha$ and the
# learning rate trade one for one. Later they stop being interchangeable: a larger learning
# rate also moves $A$ by lr per entry, and $A$ starts with entries of size $1/r$, so the
# small-$\alpha$, large-lr corner soon learns faster than the large-$\alpha$, small-lr one.
# So: fix $\alpha$ and tune the learning rate (or the other way round), never both blindly;
# and when you change $r$ under $\alpha/r$, expect to retune, or use $\alpha/\sqrt r$.

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
print(f"seconds (wall clock of each fit, evaluations included): LoRA {lora_history['seconds']:.1f}, "
      f"full {full_history['seconds']:.1f}")

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
# The two `seconds` are wall-clock times of two separate runs, one after the other, with
# their evaluations; on a machine shared with other work (as the test machines are) the
# load changes between them, and one run can come out slower than the other either way.
# They are not a measurement of the methods. To compare the methods, time single training
# steps of both on the same batch, **taking turns**, so that the load hits both alike
# (`tinylora.bench.common.timing_samples` rotates the order every round; we keep each one's
# fastest sample, the one least disturbed by other work):

# %%
x_step, y_step = get_batch(recipe_train, 4 if FAST else BATCH, base.config.block_size, np.random.default_rng(0))
contestants = {"LoRA r=8": apply_lora(load_base()[0], config), "full fine-tuning": load_base()[0]}
steps = {name: training_step(m, x_step, y_step)[0] for name, m in contestants.items()}
forwards = {name: (lambda m=m: m(x_step, y_step)) for name, m in contestants.items()}
step_ms = {k: 1e3 * min(v) for k, v in timing_samples(steps, repeat=2 if FAST else 15, warmup=1).items()}
with no_grad():
    forward_ms = {k: 1e3 * min(v) for k, v in timing_samples(forwards, repeat=2 if FAST else 15, warmup=0).items()}
for name in contestants:
    print(f"{name:17s} fastest training step {step_ms[name]:7.1f} ms   forward only {forward_ms[name]:6.1f} ms   "
          f"trainable {count_parameters(contestants[name])[0]:8,d}")
print(f"a full fine-tuning step takes {step_ms['full fine-tuning'] / step_ms['LoRA r=8']:.2f}x a LoRA step")
del contestants, steps

# %% [markdown]
# Step for step, LoRA is the cheaper one. Its forward pass costs about what the base
# model's costs (every adapted layer does one GEMM with $W_0 + sBA$; section 6 measures the
# difference, a few percent, more carefully than these few samples can). Its backward pass
# still sends the gradient through every layer to reach the adapters of the first block,
# but it never forms the (out, in) weight gradient of a frozen weight, which is a third of
# a Linear layer's work; and AdamW updates 16 thousand numbers instead of 826 thousand.

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
# An unmerged adapted layer has to add the adapter's part somewhere. The paper's formula,
# $h = W_0 x + s\,B(Ax)$, does it with a side path: the big product with $W_0$ plus two thin
# ones, $A$ then $B$ (`LoraLinear.plain_forward`, used when LoRA dropout is on). That is
# **not** what tinylora runs otherwise. Its fused op, `F.lora_linear`, first rebuilds the
# weight, $W = W_0 + s\,BA$ (out·r·in multiply-adds and one (out, in) addition), and then does
# **one** GEMM with $x$, as a plain `Linear` does; its backward is likewise one GEMM for
# $x$'s gradient plus thin ones for $A$ and $B$. Rebuilding $W$ costs the same whatever the
# batch, so it is cheap next to a product with many rows of $x$ (training, a long prompt) and
# expensive next to a product with one row (generating one token at a time, where the side
# path's $r\,(\text{in} + \text{out})$ extra multiply-adds would be cheaper).
#
# For serving, fold the adapter in once: $W \leftarrow W_0 + \frac{\alpha}{r}BA$
# (`merge_lora`). The merged model has exactly the shapes of the base model, so it runs at
# exactly the base model's speed, with neither the rebuild nor the side path;
# `unmerge_lora` subtracts the update out again.
#
# First one adapted layer alone, timed three ways for a growing number of input rows
# (tokens): the fused op, the side path, and the merged weight (a plain `Linear`). Then the
# whole model: the median time of a no-grad forward pass (batch 8, 64 tokens) for the base
# model, the LoRA model unmerged, and a merged copy. All are timed in interleaved rounds, so
# that background load hits them alike, with NumPy's matrix library held to one thread (if
# `threadpoolctl` is installed), which makes timings far steadier on a shared machine.

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

q_layer = model.blocks[0].attn.q_proj                                      # r = 8, 128 -> 128
q_adapter = q_layer.adapters["recipes"]
merged_q = merged.blocks[0].attn.q_proj.base_layer                        # W0 + s·B·A, a plain Linear
rows_list = (1, 8, 64, 512)
print(f"{'rows':>5s} {'fused (rebuild W, 1 GEMM)':>26s} {'side path (3 GEMMs)':>20s} {'merged':>9s}   (µs)")
with no_grad(), threadpool_limits(1):
    for n_rows in rows_list:
        x_rows = np.random.default_rng(0).normal(size=(n_rows, 128)).astype(np.float32)   # (rows, in)
        layer_us = {k: 1e6 * v for k, v in median_times(
            {"fused": lambda: q_layer.fused_forward(x_rows, q_adapter),
             "plain": lambda: q_layer.plain_forward(x_rows, q_adapter),
             "merged": lambda: merged_q(x_rows)}, repeat=7 if FAST else 31, warmup=2).items()}
        print(f"{n_rows:5d} {layer_us['fused']:26.1f} {layer_us['plain']:20.1f} {layer_us['merged']:9.1f}"
              f"   fused / merged = {layer_us['fused'] / layer_us['merged']:.2f}")
r_q, n_in, n_out = q_adapter.lora_A.shape[0], q_layer.in_features, q_layer.out_features
print(f"multiply-adds: rebuilding W costs out·r·in = {n_out * r_q * n_in:,d} per call; the side path costs "
      f"r·(in + out) = {r_q * (n_in + n_out):,d} per row: equal at {n_out * n_in // (n_in + n_out)} rows")

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
# Read the layer table by rows. With few rows the rebuild of $W_0 + sBA$ is most of the fused
# op's work, and the fused layer takes a good deal longer than the merged one; from a few
# hundred rows on it costs about what the merged layer costs. In NumPy the side path is the
# slowest at every size: each op has a fixed cost of some microseconds, and it runs three of
# them plus their temporaries. (Counting multiply-adds alone, the side path would win below
# the row count printed last, which is why a compiled implementation serving one token at a
# time would choose it.) tinylora's training batches and this timing's batch (512 rows per
# layer) are on the fused op's good side, so the whole unmerged model is at most a few percent
# slower than the base (here often within the timing noise): only 8 of its 25 linear layers carry an adapter, and each pays for
# one rebuild per call. Merging removes even that, and merged and base agree within timing
# noise. `merge_and_unload` goes one step further and puts plain `Linear` layers back, so
# the result is an ordinary GPT with no LoRA code in it.

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
# Only the adapter needs saving: `save_adapter` writes PEFT's two files, `adapter_config.json`
# (the rank, α and targets, with PEFT's keys) and `adapter_model.safetensors` (the $A$ and $B$
# matrices, with the shape of every adapted layer and a checksum in its metadata). Compare with a full checkpoint of the model.

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
# Three things in this table need explaining: the arithmetic adapter lowers its own loss only
# a little, it makes fables much worse, and (in the samples) its sums are wrong. The cell
# below measures the reasons.
#
# * **Most of the arithmetic loss cannot be learned.** The two numbers of a sum are random,
#   so their digits cannot be predicted by any model: a first digit (1-9) costs at least
#   about $\ln 9$ nats and a second one about $\ln 10$ (a little less in a subtraction, where
#   $b \le a$), the operator $\ln 2$. Only the answer's digits and the layout are learnable. We split the held-out loss by the kind of character predicted.
# * **Sums are scored** with `make_arithmetic_problems` (problems the corpus never contains)
#   and `score_arithmetic` (exact match of the greedy answer).
# * **Where each adapter acts.** The KL divergence between the base model's next-character
#   distribution and the adapted model's, on fables and on sums, for each adapter.

# %%
T_block = model.config.block_size
arith_text = tokenizer.decode(arith_val)
kind = np.empty(len(arith_text), dtype=object)                 # the kind of each character
after_equals = False
for j, ch in enumerate(arith_text):
    if ch == "=":
        after_equals = True
    kind[j] = ("answer digit" if after_equals else "operand digit") if ch.isdigit() else "+ - = newline"
    if ch == "\n":
        after_equals = False
n_windows = 4 if FAST else 32
starts = np.arange(n_windows) * T_block                         # non-overlapping windows
x_arith = np.stack([arith_val[i:i + T_block] for i in starts])           # (n, T)
y_arith = np.stack([arith_val[i + 1:i + T_block + 1] for i in starts])   # (n, T)
kinds = np.stack([kind[i + 1:i + T_block + 1] for i in starts])          # (n, T): kind of each target


def per_char_loss(m):
    """-log p(target) at every position of the arithmetic windows, (n, T)."""
    with no_grad():
        logp = F.log_softmax(m(x_arith)[0]).data                          # (n, T, V)
    return -np.take_along_axis(logp, y_arith[..., None], axis=-1)[..., 0]


char_loss = {}
with disable_adapters(model):
    char_loss["adapters disabled"] = per_char_loss(model)
set_adapter(model, "arithmetic")
char_loss["adapter 'arithmetic'"] = per_char_loss(model)
print(f"{'':22s}" + "".join(f"{k:>16s}" for k in ("operand digit", "answer digit", "+ - = newline", "all")))
print(f"{'share of characters':22s}" + "".join(f"{np.mean(kinds == k):16.0%}"
                                               for k in ("operand digit", "answer digit", "+ - = newline")))
for name, losses in char_loss.items():
    print(f"{name:22s}" + "".join(f"{losses[kinds == k].mean():16.3f}"
                                  for k in ("operand digit", "answer digit", "+ - = newline")) + f"{losses.mean():16.3f}")
print(f"{'independent digits':22s}{(np.log(9) + np.log(10)) / 2:16.3f}{0:16.3f}   (operand digits: ln 9 and ln 10)")

problems = make_arithmetic_problems(10 if FAST else 100, seed=0)
answers = []
for prompt, _ in problems:
    ids = tokenizer.encode(prompt)[None]                                  # (1, len(prompt))
    answers.append(tokenizer.decode(model.generate(ids, 5, temperature=0)[0])[len(prompt):])
right_length = np.mean([len(a.split("\n")[0]) == len(answer) for a, (_, answer) in zip(answers, problems)])
print(f"\nheld-out sums, greedy: exact {score_arithmetic(list(zip([p for p, _ in problems], answers))):.0%}, "
      f"answer of the right length {right_length:.0%} (of {len(problems)});  e.g. "
      + ", ".join(f"{p}{a.split(chr(10))[0]} (true {t})" for a, (p, t) in list(zip(answers, problems))[:3]))

x_fables = np.stack([fables_val[i:i + T_block] for i in starts])          # (n, T) fable windows


def log_probs(m, x):
    with no_grad():
        return F.log_softmax(m(x)[0]).data                                 # (n, T, V)


with disable_adapters(model):
    base_logp = {"fables": log_probs(model, x_fables), "sums": log_probs(model, x_arith)}
print("\nhow far each adapter moves the next-character distribution, KL(base ‖ adapter) in nats per position:")
for name in ("recipes", "arithmetic"):
    set_adapter(model, name)
    kl = {text: (np.exp(base_logp[text]) * (base_logp[text] - log_probs(model, x))).sum(-1).mean()
          for text, x in (("fables", x_fables), ("sums", x_arith))}
    print(f"  adapter {name!r:13s} on fables {kl['fables']:.3f}   on sums {kl['sums']:.3f}")

# %% [markdown]
# **What the numbers say** (about these values in a full run; fast mode trains 10 steps):
#
# * The operand digits are over 40% of the characters, and their loss is already near the
#   cost of independent random digits, for the base model and the adapter alike: nothing can
#   improve them much. The
#   learnable part, the answer digits, is the smaller part, so even a real improvement there
#   moves the average loss only a little.
# * The answer digits do improve, but not to zero: an answer needs carries between digit
#   positions and both operands at once, which 200 steps of a rank-8 change to the attention
#   projections of a 4-layer model do not buy. The adapter learns the *form* (answers of the
#   right length) long before the arithmetic, so its sums look plausible and are wrong.
# * An adapter acts on **every** input, not only on the text it was trained on: the KL
#   columns show the arithmetic adapter moving the model's predictions on fables, which it
#   never saw, by a sizeable amount (in a full run by more than on the sums themselves). Nothing in its loss asks it to leave fables alone, and
#   the loss that cannot fall keeps its gradient from vanishing, so Adam keeps stepping by
#   about lr per weight for all 200 steps. The recipe adapter, trained on English text much
#   like the fables, moves them less.
#
# ## Check yourself
#
# 1. An adapted layer has $W_0$ of shape (out, in) = (128, 128) and $r = 8$. How many parameters
#    does its adapter add?
# 2. Why is $B$ initialised to zero? What would go wrong if $A$ were zero as well?
# 3. If you double $r$ and keep $\alpha$ fixed, what happens to the scaling? Does the update keep its size?
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
# 3. $\alpha/r$ halves. That does not keep the update's size: a sum of $r$ independent terms
#    grows like $\sqrt r$, not $r$, and the default init draws $A$ at a scale $1/r$, so under
#    Adam the first step in $\Delta W$ shrinks like $r^{-3/2}$ (section 3). Fixing $\alpha$
#    saves tuning $\alpha$ again; the learning rate may still need retuning (or use rsLoRA's
#    $\alpha/\sqrt r$, with an init whose scale does not depend on $r$).
# 4. Merging stores $W_0 + \frac{\alpha}{r}BA$ in the base weight; the layer is a plain
#    matmul of the same shape as before, with no side path.
# 5. Merging overwrites the shared weight; unmerged adapters leave it untouched and only
#    the small $A, B$ are swapped.
# 6. $B$ ($d \times r$, the zero-initialised factor next to the output) in the paper's
#    column-vector convention; with row vectors it is $A^\top$'s place that $W_a$ takes.
# </details>
