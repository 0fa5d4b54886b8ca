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
# # 02b · The loss and the optimizer: what `fit` does to a model
#
# Notebook 02 trained a GPT with one call, `fit(model, ...)`, and notebook 03 fine-tunes with
# the same call. Inside it are five ideas this notebook takes apart, each with the package's
# own functions (`tinylora.functional`, `tinylora.nn`, `tinylora.optim`) on problems small
# enough to see:
#
# 1. **cross-entropy** is the negative log-likelihood of the text, in nats per character;
# 2. **LayerNorm** puts every token's features on one scale before each block;
# 3. **SGD against AdamW** on a problem whose directions have very different curvature;
# 4. **warmup**: a learning rate that starts small;
# 5. **gradient clipping**: a cap on the size of one step.
#
# `fit` uses AdamW, a linear warmup then a cosine decay, and clips gradients to a global
# norm of 1 (`tinylora/train.py`).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import tinylora
from tinylora import Tensor
from tinylora import functional as F
from tinylora.nn import GELU, LayerNorm, Linear, Sequential
from tinylora.optim import SGD, AdamW, WarmupCosine, clip_grad_norm_, warmup_cosine

FAST = os.environ.get("TINYLORA_FAST") == "1"
np.set_printoptions(precision=4, suppress=True)
print(f"tinylora {tinylora.__version__}; fast mode: {FAST}")

# %% [markdown]
# **Running time, measured** on the test machine (2 CPU cores shared with other jobs, load about
# 20): 6 s in fast mode (`TINYLORA_FAST=1`, which the test suite sets; it shortens the loops)
# and 9 s in full mode, a few of them starting the kernel. The kernel used 1.4 s and 1.8 s of
# CPU time, about what the two modes take on a laptop with a free core.
#
# ## 1. Cross-entropy is a log-likelihood
#
# A language model outputs, at every position, one score (logit) per character of the
# vocabulary. The softmax turns them into probabilities $p(c) = e^{z_c} / \sum_j e^{z_j}$,
# and the loss at that position is $-\ln p(\text{the character that really comes next})$.
# Averaged over the positions, that is the **negative log-likelihood per character** of the
# text: in nats per character (natural log), or bits if you divide by $\ln 2$; and
# $e^{\text{loss}}$ is the *perplexity*, the number of equally likely characters the model
# is, on average, choosing between.

# %%
rng = np.random.default_rng(0)
V = 96                                                           # the character vocabulary
logits = Tensor(rng.normal(size=(5, V)).astype(np.float32), requires_grad=True)   # (5 positions, V)
targets = rng.integers(0, V, size=5)                             # (5,) the true next characters
loss = F.cross_entropy(logits, targets)
log_p = F.log_softmax(logits).data                               # (5, V)
by_hand = -log_p[np.arange(5), targets].mean()
print(f"F.cross_entropy = {loss.item():.4f}   mean of -log p(target) = {by_hand:.4f}")
print(f"= {loss.item() / np.log(2):.3f} bits per character; perplexity {np.exp(loss.item()):.1f}")
print(f"a uniform guess: ln {V} = {np.log(V):.3f} nats, perplexity {V}")

loss.backward()
one_hot = np.eye(V, dtype=np.float32)[targets]                   # (5, V)
expected = (F.softmax(logits).data - one_hot) / 5                # the gradient of the mean
print("gradient = (softmax - one_hot) / positions: max |difference| =",
      np.abs(logits.grad - expected).max())

# %% [markdown]
# The gradient is the predicted probabilities minus the truth: it pushes down every wrong
# character in proportion to how much probability it got, and pushes up the right one by
# what it was missing. Minimising cross-entropy is **maximum likelihood**: the model that
# gives the training text the highest probability wins. A model that is sure and wrong pays
# a lot ($-\ln 0.01 = 4.6$), which is why a loss can rise above the uniform guess.

# %%
for p_true in (0.9, 0.5, 0.1, 1 / V, 0.001):
    print(f"p(true next character) = {p_true:6.4f}  ->  loss {-np.log(p_true):5.2f} nats")

# %% [markdown]
# ## 2. LayerNorm: one scale for every token
#
# `F.layer_norm` subtracts each row's mean and divides by its standard deviation, then
# multiplies by a learned weight and adds a learned bias (`nn.LayerNorm` holds them, one
# number per feature, starting at 1 and 0). A GPT block applies it before attention and
# before the MLP, so each block sees inputs of the same scale whatever the residual stream
# has accumulated so far; the gradients then keep a steady size too.

# %%
h = rng.normal(loc=3.0, scale=5.0, size=(4, 8)).astype(np.float32)   # (tokens, features), off-centre
out = F.layer_norm(Tensor(h)).data
by_hand = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
print("row means", out.mean(-1), " row std", out.std(-1))
print("max |F.layer_norm - by hand| =", np.abs(out - by_hand).max())
scaled = F.layer_norm(Tensor(100 * h + 7)).data
print("input scaled by 100 and shifted by 7: max |change in the output| =", np.abs(scaled - out).max())
norm = LayerNorm(8)
print("nn.LayerNorm(8): weight", norm.weight.data[:3], "... bias", norm.bias.data[:3], "...")

# %% [markdown]
# ## 3. SGD against AdamW
#
# A linear regression whose eight input features have scales from 1 down to 0.01, while each
# matters equally for the target. The loss surface is a valley that is steep along the large
# features and almost flat along the small ones (curvature $\propto$ scale², a ratio of
# $10^4$).
#
# * **SGD** steps by $-\text{lr} \cdot g$. It diverges once lr exceeds $2/\lambda_{\max}$ (the
#   largest curvature), and at that learning rate the flat directions move by a factor
#   $10^4$ too little.
# * **Adam** divides each parameter's gradient by a running estimate of its own size,
#   $\sqrt{v}$, so every weight moves by about lr per step whatever its curvature.
#   **AdamW** adds weight decay *decoupled* from the gradient (the weights shrink by a
#   factor $1 - \text{lr} \cdot \lambda$ each step), so the decay is not divided by $\sqrt v$.

# %%
n, k = 256, 8
scales = np.logspace(0, -2, k).astype(np.float32)                # (8,) 1 ... 0.01
X = rng.normal(size=(n, k)).astype(np.float32) * scales          # (256, 8)
w_true = (rng.normal(size=(1, k)) / scales).astype(np.float32)   # (1, 8)
y = X @ w_true.T                                                 # (256, 1)
curvature = np.linalg.eigvalsh(2 * X.T @ X / n)                  # the Hessian of the mean squared error
print(f"curvatures from {curvature.min():.1e} to {curvature.max():.2f}: SGD is stable below "
      f"lr = 2 / {curvature.max():.2f} = {2 / curvature.max():.2f}")
STEPS = 100 if FAST else 300


def regression_curve(make_optimizer, steps=STEPS):
    """Mean squared error at every step of training the linear model from zero."""
    model = Linear(k, 1, bias=False, rng=np.random.default_rng(1))
    model.weight.data[...] = 0
    optimizer, curve = make_optimizer(model.parameters()), []
    for _ in range(steps):
        loss = ((model(X) - Tensor(y)) ** 2).mean()
        curve.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return np.array(curve)


curves = {}
for lr in (0.3, 0.9, 1.2):
    with np.errstate(all="ignore"):                              # the unstable run overflows
        curves[f"SGD lr={lr}"] = regression_curve(lambda p: SGD(p, lr=lr))
for lr in (0.03, 0.3):
    curves[f"AdamW lr={lr}"] = regression_curve(lambda p: AdamW(p, lr=lr, weight_decay=0.0))
for name, curve in curves.items():
    print(f"{name:14s} loss at the start {curve[0]:.3f}, after {STEPS} steps {curve[-1]:.3g}")

fig, ax = plt.subplots(figsize=(6.5, 3.5))
for name, curve in curves.items():
    ax.plot(np.where(np.isfinite(curve), curve, np.nan), label=name)
ax.set(yscale="log", ylim=(1e-3, 1e3), xlabel="step", ylabel="mean squared error",
       title="an ill-conditioned regression")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# SGD's best stable learning rate fits the large features at once and then crawls: the
# remaining loss sits in the small features. A larger learning rate diverges. AdamW at 0.3
# gets far lower in the same steps because it equalises the step per weight. The price:
# Adam keeps two moments per weight (`exp_avg`, `exp_avg_sq`), twice the parameters'
# memory, which is one reason LoRA's few trainable weights matter.
#
# ## 4. Warmup
#
# At step 1 Adam's moment estimates come from a single gradient, and the first steps move
# every weight by the full learning rate in the direction of one noisy batch. With a large
# learning rate that can throw a fresh network far off before the estimates settle.
# **Warmup** raises the learning rate linearly from 0 over the first steps; `fit` then
# lowers it along a cosine (`warmup_cosine`).

# %%
total, warm = (60, 10) if FAST else (150, 20)
print("lr multiplier:", [round(warmup_cosine(s, warm, total), 2) for s in range(0, total + 1, total // 10)])

n_cls, d_in, C = 512, 16, 8
data_rng = np.random.default_rng(0)
X_cls = data_rng.normal(size=(n_cls, d_in)).astype(np.float32)   # (512, 16)
teacher = data_rng.normal(size=(d_in, C)).astype(np.float32)     # labels from a random linear teacher
labels = (X_cls @ teacher + 0.5 * data_rng.normal(size=(n_cls, C))).argmax(axis=1)   # (512,)


def classifier_curve(lr, warmup_steps, max_norm=None, steps=total):
    """Training loss per step of a small MLP classifier under AdamW with warmup and cosine decay."""
    mlp = Sequential(Linear(d_in, 64, rng=np.random.default_rng(1)), GELU(),       # 16 -> 64 -> 64 -> 64 -> 8
                     Linear(64, 64, rng=np.random.default_rng(10)), GELU(),
                     Linear(64, 64, rng=np.random.default_rng(11)), GELU(),
                     Linear(64, C, rng=np.random.default_rng(2)))
    optimizer = AdamW(mlp.parameters(), lr=lr, weight_decay=0.0)
    schedule = WarmupCosine(optimizer, warmup_steps=warmup_steps, total_steps=steps)
    batches, curve = np.random.default_rng(5), []
    for _ in range(steps):
        rows = batches.integers(0, n_cls, 64)
        loss = F.cross_entropy(mlp(X_cls[rows]), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        if max_norm is not None:
            clip_grad_norm_(mlp.parameters(), max_norm)
        optimizer.step()
        schedule.step()
        curve.append(loss.item())
    return np.array(curve)


runs = {f"lr {lr:g}, warmup {w}": classifier_curve(lr, w) for lr in (3e-2, 1e-1) for w in (0, warm)}
for name, curve in runs.items():
    print(f"{name:20s} highest loss in the first {warm} steps {curve[:warm].max():6.2f}; "
          f"mean of the last 10 {curve[-10:].mean():.3f}")
fig, ax = plt.subplots(figsize=(6.5, 3.5))
for name, curve in runs.items():
    ax.plot(curve, label=name)
ax.axhline(np.log(C), color="grey", ls=":", label=f"uniform guess, ln {C}")
ax.set(yscale="log", xlabel="step", ylabel="cross-entropy (nats per example)",
       title="warmup at two learning rates")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# At the small learning rate warmup changes little (it only delays the start). At the large
# one, the run without warmup shoots far above the uniform guess in its first steps — the
# network became confidently wrong and must first undo that — while the warmed-up run never
# rises above where it started. On this small problem both recover; on a deep network such
# a jump can leave it in a state it does not recover from, and warmup is what lets a large
# learning rate be used at all.
#
# ## 5. Gradient clipping
#
# `clip_grad_norm_(parameters, max_norm)` measures the norm of *all* gradients together,
# $\sqrt{\sum g^2}$, and if it exceeds `max_norm` scales every gradient down by the same
# factor: the direction is kept, the step is capped. It matters most for SGD, whose step is
# proportional to the gradient: one batch with an outlier can throw the weights away. Below,
# the regression of section 3 at SGD's safe learning rate, except that one batch (step 30)
# carries an input 30 times larger than usual.

# %%
g = Tensor(np.array([3.0, 4.0], dtype=np.float32), requires_grad=True)
g.grad = np.array([30.0, 40.0], dtype=np.float32)
print("norm before:", clip_grad_norm_([g], max_norm=1.0), " gradient after:", g.grad,
      "(same direction, norm 1)")


def outlier_curve(max_norm, steps=60, at=30):
    """SGD on the regression; at step ``at`` one row of the batch is 30x too large."""
    model = Linear(k, 1, bias=False, rng=np.random.default_rng(1))
    model.weight.data[...] = 0
    optimizer, curve, norms = SGD(model.parameters(), lr=0.3), [], []
    for step in range(steps):
        xb = X.copy()
        if step == at:
            xb[0] *= 30
        loss = ((model(xb) - Tensor(xb @ w_true.T)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        norm_before = clip_grad_norm_(model.parameters(), max_norm or 1e30)   # 1e30: measure, never clip
        optimizer.step()
        curve.append(((model(X) - Tensor(y)) ** 2).mean().item())      # the loss on the clean data
        norms.append(norm_before)
    print(f"max_norm={max_norm}: gradient norm at the outlier {norms[at]:.1f}, "
          f"at the step before {norms[at - 1]:.2f}")
    return np.array(curve)


plain, clipped = outlier_curve(None), outlier_curve(1.0)
print(f"clean loss just after the outlier: no clipping {plain[30]:.2f}, clipped to 1 {clipped[30]:.2f} "
      f"(before it: {plain[29]:.2f})")
fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.plot(plain, label="SGD, no clipping")
ax.plot(clipped, label="SGD, clip_grad_norm_(max_norm=1)")
ax.axvline(30, color="grey", ls=":", label="the outlier batch")
ax.set(yscale="log", xlabel="step", ylabel="mean squared error (clean data)", title="one bad batch")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Without clipping, the one large gradient undoes many steps of progress; with it, that step
# is no bigger than any other. Under Adam clipping matters less, since Adam already divides
# by the gradient's running size, but a sudden spike still moves every weight by up to the
# learning rate before $v$ catches up, so `fit` clips to 1 as well.
#
# ## Check yourself
#
# 1. A model's loss on held-out text is 1.2 nats per character. What is that in bits, and
#    what is the perplexity?
# 2. What is the gradient of the cross-entropy with respect to the logits, for one position?
# 3. Why does SGD need a smaller learning rate than Adam on the regression of section 3?
# 4. What is "decoupled" about AdamW's weight decay?
# 5. Why does a large learning rate without warmup hurt most in the first steps?
# 6. `clip_grad_norm_` found a norm of 5 with `max_norm=1`. What happens to each gradient?
#
# <details><summary>Answers</summary>
#
# 1. $1.2 / \ln 2 \approx 1.73$ bits; perplexity $e^{1.2} \approx 3.3$.
# 2. softmax(logits) minus the one-hot vector of the true class (divided by the number of
#    positions when the loss is their mean).
# 3. SGD's step is lr times the gradient, so its learning rate is capped by the steepest
#    direction ($2/\lambda_{\max}$) and the flat directions then barely move. Adam divides
#    each weight's gradient by its own running size, so each moves by about lr.
# 4. The decay shrinks the weights directly ($w \leftarrow w(1 - \text{lr}\,\lambda)$), not
#    through the gradient, so Adam's per-weight division does not rescale it.
# 5. Adam's moment estimates come from one or a few batches, and every weight still moves by
#    about lr: many large steps in the direction of little evidence.
# 6. Every gradient is multiplied by $1/5$ (in fact $1/(5 + 10^{-6})$): the direction is kept,
#    the global norm becomes 1.
# </details>
