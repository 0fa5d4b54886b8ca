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
# # 02 · The transformer: attention by hand, then a small GPT
#
# A language model reads text one character at a time and predicts the next one. To do that
# well, the prediction at position $t$ must be able to *look back* at earlier positions and
# pick out the useful ones. **Attention** is that look-back, and a GPT is a stack of
# attention and small MLPs.
#
# Plan: attention on a 4-token toy, by hand, with every shape printed; the same through
# `tinylora.functional.scaled_dot_product_attention`; one GPT block; the parameter table;
# training a small GPT on the fables corpus; sampling; and finally the **shipped base model**
# `load_base()`. Its loss on the same recipes in two layouts, one it has read and one it has
# not, shows the shift that LoRA will work on in notebook 03.

# %%
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np

import tinylora
from tinylora import Tensor
from tinylora import functional as F
from tinylora.data import CharTokenizer, load_corpus, train_val_split
from tinylora.models.gpt import GPT, GPTConfig
from tinylora.pretrained import load_base
from tinylora.train import estimate_loss, fit

FAST = os.environ.get("TINYLORA_FAST") == "1"
STEPS = 30 if FAST else 300
# tqdm's notebook bar needs ipywidgets; we pass progress=False anyway
warnings.filterwarnings("ignore", message="IProgress not found")
np.set_printoptions(precision=3, suppress=True)
print(f"tinylora {tinylora.__version__}; fast mode: {FAST}; training steps: {STEPS}")

# %% [markdown]
# **Running time, measured** on the test machine (2 CPU cores shared with other jobs, load about
# 20): 83 s in fast mode (`TINYLORA_FAST=1`, which the test suite sets: 30 training steps and
# small corpora) and 11 minutes in full mode (300 steps). The kernel used 20 s and 141 s of CPU
# time, about what the two modes take on a laptop with a free core.

# %% [markdown]
# ## 1. Attention by hand
#
# Four tokens, each already turned into a vector of size $d = 8$ (in a GPT these come from the
# embedding tables). Every token makes three vectors with three learned matrices:
#
# * a **query** $q$ — "what am I looking for?",
# * a **key** $k$ — "what do I contain?",
# * a **value** $v$ — "what do I hand over if chosen?".
#
# The score of token $t$ for token $s$ is the dot product $q_t \cdot k_s$, divided by
# $\sqrt{d}$ so that the scores keep a variance near 1 whatever the size $d$.

# %%
rng = np.random.default_rng(0)
tokens = ["The", "fox", "saw", "grapes"]
T, d = len(tokens), 8
x = rng.normal(size=(T, d))                                     # (T, d) token vectors
W_q, W_k, W_v = (rng.normal(size=(d, d)) / np.sqrt(d) for _ in range(3))

q, k, v = x @ W_q, x @ W_k, x @ W_v                             # (T, d) each
scores = q @ k.T / np.sqrt(d)                                   # (T, T): row = query, column = key
print("q, k, v:", q.shape, k.shape, v.shape, "  scores:", scores.shape)
print(scores)

# %% [markdown]
# A language model must not peek at the future: when predicting the token after "fox", it may
# use "The" and "fox" but not "saw". The **causal mask** hides every key to the right of the
# query by setting its score to $-\infty$, so that after the softmax its weight is exactly 0.
# Each row of the softmax is then a set of weights over the visible tokens that sums to 1,
# and the output of a token is the weighted average of the visible values.

# %%
hidden = np.triu(np.ones((T, T), dtype=bool), k=1)             # (T, T): True = future, hidden
masked = np.where(hidden, -np.inf, scores)
weights = np.exp(masked - masked.max(axis=-1, keepdims=True))   # softmax, row by row
weights /= weights.sum(axis=-1, keepdims=True)                  # (T, T), rows sum to 1
attended = weights @ v                                          # (T, d)

fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.4))
limit = np.abs(scores).max()
panels = [(scores, "scores q·k/√d (red > 0 > blue)", dict(cmap="coolwarm", vmin=-limit, vmax=limit)),
          (~hidden, "causal mask (dark = hidden)", dict(cmap="gray")),
          (weights, "softmax weights", dict(cmap="viridis", vmin=0, vmax=1))]
for ax, (image, title, style) in zip(axes, panels):
    shown = ax.imshow(image, **style)
    if image.dtype != bool:                                     # the mask is two colours, named in its title
        fig.colorbar(shown, ax=ax, shrink=0.8, label="score" if ax is axes[0] else "weight")
    ax.set(title=title, xticks=range(T), yticks=range(T), xticklabels=tokens, yticklabels=tokens,
           xlabel="key (looked at)", ylabel="query (looking)")
for (i, j), w in np.ndenumerate(weights):
    axes[2].text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=8,
                 color="white" if w < 0.5 else "black")
plt.tight_layout()
plt.show()
print("row sums:", weights.sum(axis=-1))


# %% [markdown]
# The library does exactly this in one fused op, with a hand-written backward, on tensors
# shaped (batch, heads, T, head_dim). Same numbers:

# %%
def as_tensor(a):
    return Tensor(a[None, None])                                # (1, 1, T, d): batch 1, one head


library = F.scaled_dot_product_attention(as_tensor(q), as_tensor(k), as_tensor(v), causal=True)
print("library output:", library.shape,
      "  max |difference| from ours:", np.abs(library.data[0, 0] - attended).max())

# %% [markdown]
# Why divide by $\sqrt{d}$? A dot product of two random vectors with unit-variance entries has
# variance $d$. Without the division, larger heads would have larger scores, the softmax would
# saturate to a one-hot choice and its gradient would vanish.

# %%
for size in (8, 64, 512):
    a, b = rng.normal(size=(2, 10_000, size))
    dots = (a * b).sum(axis=1)
    print(f"d={size:3d}: std of q·k = {dots.std():6.2f}   std of q·k/√d = {(dots / np.sqrt(size)).std():.2f}")

# %% [markdown]
# ## 2. A GPT block
#
# A GPT block does two things, each wrapped in a **residual connection** (the input is added
# back to the output, so the block only learns a *change*, and gradients flow straight
# through the addition):
#
# ```
# x = x + attention(layer_norm(x))    # tokens exchange information
# x = x + mlp(layer_norm(x))          # each token thinks on its own
# ```
#
# Attention uses several *heads*: the $C$ features are split into $H$ groups of $C/H$, and each
# group attends on its own, (B, T, C) → (B, H, T, C/H). The separate `q_proj`, `k_proj`,
# `v_proj`, `o_proj` layers matter later: LoRA adapts `q_proj` and `v_proj` only.

# %%
config = GPTConfig.preset("micro")
model = GPT(config, seed=0)
print(config)
print(model.blocks[0])

x = Tensor(rng.normal(size=(2, 8, config.n_embd)).astype(np.float32))   # (B, T, C)
print("block input", x.shape, "-> output", model.blocks[0](x).shape)

# %% [markdown]
# ## 3. Where the parameters are
#
# Every weight is a named `Parameter`. Counting them per component, and checking against a
# formula, shows where a transformer's size comes from: per block the four attention
# projections hold $4(C^2 + C)$, the MLP $8C^2 + 5C$, the two LayerNorms $4C$ — together
# $12C^2 + 13C$.

# %%
print(f"{'name':34s} {'shape':>12s} {'count':>8s}")
for name, p in model.named_parameters():
    if not name.startswith("blocks.") or name.startswith("blocks.0."):
        print(f"{name:34s} {str(p.shape):>12s} {p.size:8,d}")
print(f"{'... blocks.1 has the same as blocks.0':34s}")

groups = {"token embedding": "wte.", "position embedding": "wpe.", "attention": ".attn.",
          "MLP": ".mlp.", "LayerNorm": "ln_", "lm_head": "lm_head."}
counts = {g: sum(p.size for n, p in model.named_parameters() if key in n) for g, key in groups.items()}
C, V, L, Tb = config.n_embd, config.vocab_size, config.n_layer, config.block_size
formula = V * C + Tb * C + L * (12 * C**2 + 13 * C) + 2 * C + V * C
print(f"\ntotal {model.num_parameters():,d}; formula V·C + T·C + L·(12C² + 13C) + 2C + V·C = {formula:,d}")

fig, ax = plt.subplots(figsize=(6.5, 2.6))
ax.barh(list(counts), list(counts.values()), color="tab:blue")
ax.set(xlabel="parameters", title=f"micro GPT: {model.num_parameters():,d} parameters")
ax.invert_yaxis()
plt.show()

# %% [markdown]
# ## 4. Training on fables
#
# The corpus is generated by a small grammar (nothing is downloaded): short animal fables,
# each with a moral. The tokenizer maps each of 96 characters to an id. `fit` samples random
# windows of `block_size` characters and trains with AdamW, a warmup and a cosine schedule.
#
# Before training the model knows nothing, so its loss is about $\ln 96 \approx 4.56$ — a
# uniform guess over the vocabulary. Watch it fall.

# %%
tokenizer = CharTokenizer()
text = load_corpus("fables", n_chars=60_000 if FAST else 300_000)
train_ids, val_ids = train_val_split(tokenizer.encode(text), 0.1)
print(f"{len(train_ids):,d} training characters, {len(val_ids):,d} validation; a sample:\n")
print(text[:300])

# %%
history = fit(model, train_ids, val_ids, steps=STEPS, batch_size=16, lr=3e-3, warmup_steps=STEPS // 10,
              eval_every=max(1, STEPS // 6), eval_batches=2, progress=False)
print(f"{STEPS} steps in {history['seconds']:.1f} s; final validation loss {history['val_loss'][-1]:.3f}")

steps, losses = np.array(history["step"]), np.array(history["train_loss"])
window = max(1, STEPS // 20)
smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
fig, ax = plt.subplots(figsize=(6.5, 3.5))
ax.plot(steps, losses, alpha=0.3, label="train (each step)")
ax.plot(steps[window - 1:], smooth, label=f"train (mean of {window})")
ax.plot(history["val_step"], history["val_loss"], "o-", label="validation")
ax.axhline(np.log(tokenizer.vocab_size), color="grey", ls=":", label="uniform guess, ln 96")
ax.set(xlabel="step", ylabel="cross-entropy loss (nats per character)", title="micro GPT on fables")
ax.legend()
plt.show()


# %% [markdown]
# ## 5. Sampling
#
# `generate` feeds the text in, takes the probabilities for the next character, draws one,
# appends it and repeats. `temperature` below 1 sharpens the distribution (safer, more
# repetitive); above 1 flattens it. After a few hundred steps you should see words and
# spaces; after only a few dozen, mostly plausible letter frequencies.

# %%
def sample(m, prompt, n=200, temperature=0.8, seed=0):
    ids = tokenizer.encode(prompt)[None]                          # (1, T)
    return tokenizer.decode(m.generate(ids, n, temperature=temperature, seed=seed)[0])


print(sample(model, "The fox ", n=60 if FAST else 200))

# %% [markdown]
# ## 6. The shipped base model
#
# A bigger model (the "base" preset: 4 layers, 128 features), trained for longer, is shipped
# with the package, so every LoRA experiment starts from the same frozen weights. Like a real
# pre-training corpus, its text is a mixture: 70% fables, 25% recipes from a **cookbook** and
# 5% sums (`tinylora.pretrained.BASE_MIXTURE`). `load_base()` returns it with its tokenizer;
# `with_metadata=True` also tells how it was trained.

# %%
base, tokenizer, meta = load_base(with_metadata=True)
print({key: meta[key] for key in ("corpus", "preset", "steps", "final_val_loss", "parameters")
       if key in meta})
for seed in range(2):
    print(f"--- sample {seed} ---")
    print(sample(base, "The ", n=80 if FAST else 300, seed=seed))

# %% [markdown]
# ### Domain shift
#
# The base model has read many recipes, but only in a cookbook's layout. Notebook 03
# fine-tunes it on **recipe cards**: the `recipes` corpus holds the same recipes, card for
# card (one seed gives the same dishes, quantities and steps), with other labels, bullets
# and step numbers. The first recipe of each, from the same seed:

# %%
for name in ("cookbook", "recipes"):
    first = load_corpus(name, n_chars=2_000, seed=1).split("\n\n")[0]   # the first recipe
    print(f"--- {name} ---\n{first}\n")

# %% [markdown]
# How surprised is the base model by each kind of text? The loss on held-out text of each
# kind measures it (lower is better); the text is generated with a seed the model never saw.

# %%
n_batches = 1 if FAST else 8
held_out = {name: tokenizer.encode(load_corpus(name, n_chars=20_000, seed=1))
            for name in ("fables", "cookbook", "recipes", "arithmetic")}
base_loss = {name: estimate_loss(base, ids, batch_size=16, max_batches=n_batches)
             for name, ids in held_out.items()}
micro_loss = {name: estimate_loss(model, ids, batch_size=16, max_batches=n_batches)
              for name, ids in held_out.items()}
for name in held_out:
    print(f"{name:10s}  base model {base_loss[name]:.3f}   our micro model {micro_loss[name]:.3f}")

fig, ax = plt.subplots(figsize=(7, 3.2))
positions = np.arange(len(held_out))
ax.bar(positions - 0.2, list(base_loss.values()), 0.4, label="base (shipped)")
ax.bar(positions + 0.2, list(micro_loss.values()), 0.4, label=f"micro ({STEPS} steps, above)")
ax.set(xticks=positions, xticklabels=list(held_out), ylabel="loss (nats per character)",
       title="held-out loss on ...")
ax.legend()
plt.show()

# %% [markdown]
# The base model is at home in fables and in the cookbook: its loss is low on both (about 0.3
# nats per character). On the **same recipes written as cards** it is several times higher
# (about 1.8). (The base model is not trained here, so fast mode gives nearly the same
# numbers.) It knows *what* the recipes say, but it has never seen *how* the cards lay
# them out: every `Title:`, `- ` bullet and `1.` is a surprise, and a surprised model also
# guesses worse at the words that follow. Sums are hard for another reason: the two numbers
# of a sum are random, so no model can predict their digits, and the answer needs real
# addition. Our micro model, which read nothing but fables, and only for a few hundred
# steps, is far behind everywhere, and worst on sums: it has never seen a digit there.
#
# Notebook 03 teaches the base model the card layout **without touching its weights**. The
# content is already there, so the change should be small; notebook 04 measures how small.
#
# ## Check yourself
#
# 1. Scores have shape (T, T). What do row $t$ and column $s$ mean?
# 2. Why is the causal mask applied *before* the softmax, with $-\infty$, and not after it with 0?
# 3. Why divide the scores by $\sqrt{d}$?
# 4. How many parameters does one block of the base model ($C = 128$) have?
# 5. What loss does a model that knows nothing get with 96 characters, and why?
# 6. `cookbook` and `recipes` hold the same recipes. Why is the base model's loss so much
#    higher on `recipes`?
#
# <details><summary>Answers</summary>
#
# 1. How much query token $t$ attends to key token $s$ (before the softmax).
# 2. Masking after the softmax would leave rows that no longer sum to 1; $-\infty$ becomes
#    exactly 0 *inside* the softmax, which renormalises over the visible tokens only.
# 3. The dot product of $d$-dimensional random vectors has variance $d$; dividing keeps the
#    scores near unit variance so the softmax neither saturates nor loses its gradient.
# 4. $12C^2 + 13C = 12 \cdot 16384 + 13 \cdot 128 = 198{,}272$.
# 5. $\ln 96 \approx 4.56$ nats: the cross-entropy of a uniform guess.
# 6. A quarter of its training text was the cookbook, so it knows the dishes, quantities and
#    steps. It has never seen the cards' layout (`Title:`, `Serves:`, `- ` bullets, `1.`
#    numbering, `Tip:`): those characters surprise it, and it then guesses worse at the
#    words after them. The content is old; only the layout is new.
# </details>
