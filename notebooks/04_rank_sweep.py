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
# # 04 · The rank sweep: how much rank does an update need?
#
# Notebook 03 picked $r = 8$ without asking why. LoRA bets that the change fine-tuning makes
# to a weight matrix needs only a few directions, so a thin $\Delta W = BA$ can hold it.
# This notebook puts that bet to the test with the library's own experiment runner,
# `tinylora/experiments/`: train adapters of rank 1 to 32, train every weight for comparison,
# and look at what each rank buys.
#
# Plan: the hypothesis and the three tasks that test it; running the sweep (and resuming it);
# a planted low-rank update and its knee; a real domain shift against full fine-tuning; the
# spectrum of a full fine-tuning update; whether adapters of different rank learn the same
# directions; $\alpha/r$ against rsLoRA's $\alpha/\sqrt{r}$; what each rank costs.
#
# Every number and figure below is computed from the sweep's `results.jsonl` by
# `tinylora.experiments.analysis` and `tinylora.experiments.plots`; the same code draws the
# figures of [`docs/results.md`](../docs/results.md).

# %%
import os
import tempfile
import time

import numpy as np
from IPython.display import Image, Markdown, display

import tinylora
from tinylora import no_grad
from tinylora.experiments import analysis, plots
from tinylora.experiments.plots import KNEE_FACTOR
from tinylora.experiments.sweep import SweepConfig, run_sweep
from tinylora.experiments.tasks import planted_update
from tinylora.lora import LoraConfig, LoraLinear
from tinylora.nn import Linear
from tinylora.optim import AdamW

FAST = os.environ.get("TINYLORA_FAST") == "1"
CONFIG = SweepConfig.quick() if FAST else SweepConfig()     # quick: ranks 1, 4, 8 and 25 steps
# Fast mode starts fresh; the full sweep goes to a fixed folder, so running the notebook again resumes it.
if FAST:
    OUT = tempfile.mkdtemp(prefix="tinylora-04-")
else:
    OUT = os.path.join(tempfile.gettempdir(), "tinylora-04-sweep")
np.set_printoptions(precision=3, suppress=True)
print(f"tinylora {tinylora.__version__}; fast mode: {FAST}; sweep folder: {OUT}")


def show_png(fig, name, width=None):
    """Save a figure drawn by tinylora.experiments.plots into the sweep's figures/ folder and show it."""
    path = os.path.join(OUT, plots.FIGURES_DIR, f"{name}.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=150)
    display(Image(filename=path, width=width))


# %% [markdown]
# **Running time, measured** on the test machine (2 CPU cores shared with other jobs, load about
# 20): 2 minutes in fast mode (`TINYLORA_FAST=1`, which the test suite sets: ranks 1, 4, 8 and
# 25 steps, in a fresh folder), of which the kernel used 27 s of CPU time, about what it takes
# on a laptop with a free core. Full mode trains 14 runs plus the 6 of section 7: 9 minutes
# here for a fresh sweep folder (at a load of about 10), and 34 s when it runs again, because
# the sweep resumes and finds every run already done.

# %% [markdown]
# ## 1. The hypothesis, and how to test it
#
# Aghajanyan, Zettlemoyer and Gupta (2020, [arXiv:2012.13255](https://arxiv.org/abs/2012.13255))
# fine-tuned large language models while letting the parameters move only inside a *random*
# low-dimensional subspace, and found that a few hundred to a few thousand free numbers reach
# 90 % of full fine-tuning: a pre-trained model is a few directions away from many tasks, its
# **intrinsic dimension** is small. Hu et al. (2021, [arXiv:2106.09685](https://arxiv.org/abs/2106.09685))
# carried the idea to each weight matrix: the update $\Delta W = W_{\text{ft}} - W_0$ should
# have a low **intrinsic rank**, so LoRA constrains it to rank $r$ from the start. "Low" only
# means something against a reference: every real matrix is full rank in exact arithmetic,
# so the question is whether $\Delta W$'s singular values fall off much faster than those of a
# random matrix of the same size and norm. ([`docs/intrinsic_rank.md`](../docs/intrinsic_rank.md)
# tells the story at length.)
#
# `tinylora sweep` tests it three ways, always starting from the shipped base model of
# notebook 02:
#
# | task | what is trained | what it tests |
# |---|---|---|
# | `planted` | a student (base + LoRA on `blocks.3.attn.v_proj`) learns to copy a teacher whose weight carries a hidden rank-$k^*$ update $\Delta W^*$ ($k^* = 4$) | a controlled experiment: is rank the adapter's capacity, and does training find the planted directions? The error should have a **knee** at $r = k^*$. |
# | `domain` | LoRA on `q_proj`, `v_proj` of every block, and full fine-tuning of every weight, on the recipe cards (the base model read the same kind of recipes in a cookbook's layout) | a real shift, of layout rather than knowledge: how much of full fine-tuning's improvement does each rank recover, and is the full update itself low rank? |
# | `scaling` | the domain task with $\alpha/r$ and with rsLoRA's $\alpha/\sqrt{r}$ | does the rank change the update's scale, and so the effective learning rate? |
#
# The planted task can only show that LoRA finds a low-rank update *when one exists*; the
# domain task is where we learn whether a real update is low rank.

# %% [markdown]
# ## 2. Running the sweep
#
# A sweep is a `SweepConfig`: tasks × ranks × seeds, plus one full fine-tuning run per task.
# `config.runs()` expands it into the list of runs, each with a stable id (a hash of
# everything that determines its numbers). From a terminal the same sweeps are
#
# ```bash
# tinylora sweep --quick --out DIR      # fast mode: ranks 1, 4, 8, 25 steps (about 25 s)
# tinylora sweep --out DIR              # the default: ranks 1, 2, 4, 8, 16, 32 (about 2 minutes)
# tinylora report DIR                   # the Markdown tables below
# tinylora plot DIR                     # DIR/figures/*.png and *.svg
# ```
#
# `run_sweep` appends each finished run to `DIR/results.jsonl` and skips runs already there,
# so an interrupted sweep **resumes** where it stopped: run the cell below a second time (or
# the same command again) and nothing is retrained.

# %%
print("config:", CONFIG.to_dict())
for spec in CONFIG.runs():
    print("  ", spec.run_id)

start = time.perf_counter()
results = run_sweep(CONFIG, OUT, progress=False)
print(f"{len(results)} runs finished in {time.perf_counter() - start:.1f} s")

# %%
results = run_sweep(CONFIG, OUT, progress=False)    # the same sweep again: everything is already done
rows = plots.summarize(results)                     # one row per (task, method, rank, ...), seeds pooled
display(Markdown(plots.report_markdown(OUT)))

# %% [markdown]
# Each line of `results.jsonl` holds the run's metrics, its parameter counts and file sizes,
# and the raw material for the analyses below (the singular values of a full fine-tuning
# $\Delta W$, the $A$ matrices of the last block's adapters). `plots.plot_all` draws every
# figure whose data is present; `budget` and `scaling` are skipped here because this sweep did
# not run those tasks.

# %%
written = plots.plot_all(OUT, formats=("png",), log=print)
FIGURES = os.path.join(OUT, plots.FIGURES_DIR)
print("wrote", sorted(os.path.basename(p) for p in written))

# %% [markdown]
# ## 3. The planted rank: a knee at $k^*$
#
# Why plant an update? Because then we know the right answer. The teacher's
# `blocks.3.attn.v_proj` carries an extra $\Delta W^*$ of rank exactly $k^* = 4$, and the
# student must reproduce the teacher's logits. By the Eckart–Young theorem the best rank-$r$
# approximation of $\Delta W^*$ keeps its top $r$ singular values, so a rank-$r$ adapter can
# match it exactly once $r \ge k^*$ and not before: the error should fall steeply up to
# $r = k^*$ and then flatten. The reference line is full fine-tuning of the same layer (all
# of its weights train), run for the same number of steps.
#
# The *relative error* is the student's output error divided by the untrained student's
# (1 = no better than the base model). The orange line is the error in the weights,
# $\lVert \Delta W - \Delta W^* \rVert_F / \lVert \Delta W^* \rVert_F$.

# %%
Image(filename=os.path.join(FIGURES, "planted_knee.png"))

# %% [markdown]
# `analysis.knee_rank` names the knee: the smallest rank whose error is within a factor of
# full fine-tuning's; the report uses the same factor, `KNEE_FACTOR` (5). **What to look for:** in the full
# sweep the knee should sit at $k^* = 4$; the short fast-mode run is noisier. The last column
# is the ideal: the weight error of the best possible rank-$r$ approximation of a rank-4
# update with equal singular values, $\sqrt{\sum_{i > r} s_i^2 / \sum_i s_i^2}$, computed from
# `planted_update` itself.

# %%
planted_runs = [r for r in results if r["task"] == "planted"]
k_star = planted_runs[0]["planted"]["k_star"]
planted_lora = [r for r in rows if r["task"] == "planted" and r["method"] == "lora"]
floor = next(r for r in rows if r["task"] == "planted" and r["method"] == "full")["mean"]
weight_error = {r["rank"]: r["metrics"]["weight_error"] for r in planted_runs if r["method"] == "lora"}
ideal = analysis.cumulative_energy(
    analysis.singular_spectrum(planted_update((128, 128), k_star, 1.0, seed=0)))

print(f"full fine-tuning (the reference): relative error {floor:.4f}; "
      f"{KNEE_FACTOR:g} x that = {KNEE_FACTOR * floor:.4f}")
print(f"{'rank':>4}  {'rel_error':>9}  {'within?':>10}  {'weight error':>12}  {'ideal weight error':>18}")
for row in planted_lora:
    r = row["rank"]
    best = np.sqrt(max(0.0, 1.0 - ideal[r - 1]))
    within = str(row["mean"] <= KNEE_FACTOR * floor)
    print(f"{r:4d}  {row['mean']:9.4f}  {within:>10}  {weight_error[r]:12.3f}  {best:18.3f}")

knee = analysis.knee_rank([r["rank"] for r in planted_lora], [r["mean"] for r in planted_lora], floor=floor,
                          factor=KNEE_FACTOR)
print(f"knee (smallest rank within {KNEE_FACTOR:g}x full fine-tuning's error): r = {knee};  "
      f"planted rank k* = {k_star}")

# %% [markdown]
# **Why do ranks $\ge 8$ end *below* full fine-tuning?** Because full fine-tuning's error is
# not a floor. Both runs could reach zero error — full fine-tuning can represent any
# $\Delta W$, and a rank-$r$ adapter can represent $\Delta W^*$ once $r \ge k^*$ — and both
# stop after the same fixed number of steps, before they get there. How far each gets in
# that budget depends on its learning rate and on how far each step moves $\Delta W$, and
# those differ: the results record each run's learning rate, and the training curves show
# that neither has stopped falling.

# %%
planted_by_method = {("full" if r["method"] == "full" else f"LoRA r={r['rank']}"): r for r in planted_runs}
print(f"{'run':12s} {'steps':>5s} {'lr':>7s}   {'train loss: at 50%':>18s} {'at 75%':>9s} {'at the end':>10s}")
for name, run in sorted(planted_by_method.items(), key=lambda item: item[1]["rank"] or 10**6):
    curve = np.asarray(run["curve"]["train_loss"])
    n_steps = len(curve)
    print(f"{name:12s} {run['steps']:5d} {run['lr']:7.0e}   {curve[n_steps // 2 - 1]:18.3g} "
          f"{curve[3 * n_steps // 4 - 1]:9.3g} {curve[-1]:10.3g}")

# %% [markdown]
# The LoRA runs use a larger learning rate than full fine-tuning (each task's defaults,
# `tinylora.experiments.tasks.TASK_DEFAULTS`), and each Adam step of an adapter moves
# $\Delta W = sBA$ along all of its $r$ directions at once. In the full sweep, full
# fine-tuning's training loss halves between the middle and three quarters of the run, and
# it is still falling at the end, where the cosine schedule has taken the learning rate down
# to 1% of its peak (the planted task decays to `min_lr_ratio=0.01`): the budget, not the
# method, decides where it stops, and the rank-8 adapter simply descends faster in that
# budget. A real floor would be each method's error at convergence; the line in the figure
# is only full fine-tuning's error *for this budget*.
#
# **Why does the weight error stay near 0.5 while the output error falls to 0.001?** The
# output error only sees $\Delta W$ along the directions that the layer's inputs actually
# take. The planted $\Delta W^*$ lies in those directions (the sweep plants it in the top
# directions of the layer's real inputs), but the adapter's $A$ starts random in **all** 128
# input directions, and $A$'s gradient, $s\,B^\top g\,x^\top$, lies in the span of the inputs
# $x$: the part of $A$ outside that span never changes (for real inputs, which have a little
# energy in every direction, the part along their weak directions barely changes). Once $B$
# has grown, $sBA$ carries that random part along, in directions the inputs (almost) never
# take: it costs (almost) nothing at the output and counts fully in
# $\lVert \Delta W - \Delta W^* \rVert_F$.
#
# A small copy of the experiment shows it: a 128 × 128 layer whose inputs live in a
# 16-dimensional subspace, a planted rank-4 update inside it, a rank-8 adapter trained by
# AdamW to match the outputs. We split the weight error into its part on the inputs'
# subspace and its part outside it ($P$ projects onto the subspace).

# %%
toy_rng = np.random.default_rng(0)
basis, _ = np.linalg.qr(toy_rng.normal(size=(128, 16)))                 # (128, 16) the inputs' subspace
x_toy = (toy_rng.normal(size=(512, 16)) @ basis.T).astype(np.float32)  # (512, 128) inputs inside it
toy_base = Linear(128, 128, rng=np.random.default_rng(1))
planted_toy = planted_update((128, 128), 4, 1.0, seed=0, input_basis=basis).astype(np.float32)  # (128, 128)
y_toy = x_toy @ (toy_base.weight.data + planted_toy).T + toy_base.bias.data                     # (512, 128)
toy = LoraLinear(toy_base)
toy.add_adapter("toy", LoraConfig(r=8, lora_alpha=16), np.random.default_rng(2))
toy.active_adapter = "toy"
optimizer = AdamW([toy.adapters["toy"].lora_A, toy.adapters["toy"].lora_B], lr=1e-2, weight_decay=0.0)
with no_grad():
    start_error = ((toy(x_toy) - y_toy) ** 2).mean().item()
for _ in range(60 if FAST else 300):
    loss = ((toy(x_toy) - y_toy) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
error = toy.delta_weight() - planted_toy                                  # (128, 128)
P = basis @ basis.T                                                       # (128, 128) projector
norm = np.linalg.norm(planted_toy)
print(f"relative output error {loss.item() / start_error:.1e}")
print(f"weight error ‖ΔW − ΔW*‖/‖ΔW*‖ = {np.linalg.norm(error) / norm:.3f}:  on the inputs' subspace "
      f"{np.linalg.norm(error @ P) / norm:.3f},  outside it {np.linalg.norm(error @ (np.eye(128) - P)) / norm:.3f}")

# %% [markdown]
# Nearly all of the weight error lies outside the inputs' subspace, where no input ever
# looks; on the subspace the adapter has found $\Delta W^*$. So the output error is the
# measure of what the adapter learned, and the weight error mostly measures the random
# start of $A$ that training had no reason to remove. (Weight decay would slowly shrink it.)
#
# Ranks above $k^*$ add little next to the drop before it: the extra capacity has almost
# nothing left to express. (Try `tinylora sweep --task planted --k-star 2`: the knee should
# move with $k^*$.)
#
# This shows that rank acts as capacity and that training finds the planted directions. It
# does **not** show that real fine-tuning updates are low rank — for that we need a real task.
#
# ## 4. A real domain shift: LoRA against full fine-tuning
#
# The base model read recipes in a cookbook's layout; now it is fine-tuned on recipe cards,
# the same kind of recipes in a layout it has never seen (notebook 02). Three reference
# points: the frozen base model (dotted), full fine-tuning of every weight (dashed), and LoRA
# on `q_proj` and `v_proj` at each rank. `analysis.recovered_fraction` turns a LoRA loss
# into the share of full fine-tuning's improvement it achieves:
# $(\text{base} - \text{LoRA}) / (\text{base} - \text{full})$.

# %%
Image(filename=os.path.join(FIGURES, "domain_metric_vs_rank.png"))

# %%
domain_runs = [r for r in results if r["task"] == "domain"]
base_loss = float(np.mean([r["metrics"]["base_val_loss"] for r in domain_runs]))
domain_full = next(r for r in rows if r["task"] == "domain" and r["method"] == "full")
domain_lora = [r for r in rows if r["task"] == "domain" and r["method"] == "lora"]

print(f"{'':18s} {'held-out loss':>13}  {'recovered':>9}  {'trainable':>9}")
print(f"{'frozen base':18s} {base_loss:13.4f}  {0:9.0%}  {'–':>9}")
for row in domain_lora:
    fraction = analysis.recovered_fraction(base_loss, row["mean"], domain_full["mean"])
    print(f"{'LoRA r=' + str(row['rank']):18s} {row['mean']:13.4f}  {fraction:9.0%}  "
          f"{row['trainable_pct'] / 100:9.2%}")
print(f"{'full fine-tuning':18s} {domain_full['mean']:13.4f}  {1:9.0%}  "
      f"{domain_full['trainable_pct'] / 100:9.2%}")

# %% [markdown]
# **What to look for.** In the full sweep (100 steps per run) a single direction per matrix,
# $r = 1$, already gets about 80% of full fine-tuning's improvement. $r = 4$ gets about 90%
# with under 1% of the weights trainable, and then the curve flattens: from $r = 8$ to
# $r = 32$ it gains only a couple of points more, while each doubling doubles the adapter.
# That is the intrinsic-rank hypothesis at work: the change the cards ask for fits in a few
# directions of `q` and `v`. (Fast mode trains 25 steps, so its fractions are rougher.)
#
# Why so few? The base model already knows *what* recipes say; the cards only ask it to say
# it in another layout, and re-routing what the model already computes is just what a small
# change to the attention projections can do. The claim depends on that. An earlier base
# model of this project had read recipes only as 5% of its text; on the same task LoRA on
# `q` and `v` got about a tenth of full fine-tuning's improvement at $r = 1$ and about half
# even at $r = 32$. That target asked for new knowledge — words, quantities, the details of
# each dish — and full fine-tuning could store it in the embeddings, the MLPs and the output
# layer, which this adapter leaves frozen. A low intrinsic rank is a property of a task
# *relative to a base model that is already close to it*.
#
# An experiment to try: do the last few points sit outside `q` and `v`? Adapt every linear
# layer instead, at a few ranks, and compare the recovered fractions.
#
# ```bash
# tinylora sweep --task domain --targets all-linear --ranks 1,4,16 --out runs/all-linear
# ```
#
# ## 5. Is full fine-tuning's update low rank?
#
# Full fine-tuning puts no constraint on $\Delta W$, so its spectrum is the direct test of the
# hypothesis. For each attention projection the sweep stored the singular values of
# $\Delta W = W_{\text{ft}} - W_0$ and of a Gaussian matrix of the same shape and norm (dashed):
# no low-rank structure, the same energy.

# %%
Image(filename=os.path.join(FIGURES, "delta_spectrum.png"), width=950)

# %%
full_run = next(r for r in domain_runs if r["method"] == "full")
spectra, randoms = full_run["analysis"]["delta_spectra"], full_run["analysis"]["random_spectra"]
print(f"{'layer':22s} {'ΔW: eff. rank':>13} {'90% in top':>10} {'top 8 hold':>10}"
      f"   {'random: eff. rank':>17} {'90% in top':>10} {'top 8 hold':>10}")
for layer in sorted(spectra):
    s, g = np.asarray(spectra[layer]), np.asarray(randoms[layer])          # (min(out, in),) each
    print(f"{layer:22s} {analysis.effective_rank(s):13.1f} {analysis.energy_rank(s, 0.9):10d}"
          f" {analysis.cumulative_energy(s)[7]:10.0%}"
          f"   {analysis.effective_rank(g):17.1f} {analysis.energy_rank(g, 0.9):10d}"
          f" {analysis.cumulative_energy(g)[7]:10.0%}")

# %% [markdown]
# Read each row against its random twin. In the full sweep the update's energy is far more
# concentrated than the random matrix's: its top 8 directions of 128 hold about half to
# two thirds of it (the random matrix's, about a fifth), 90% of it sits in about 25-30
# directions (random: about 66), and its effective rank is about 62-68 (random: about 103).
# Fine-tuning clearly prefers a few directions.
#
# Yet the update is not *only* a few directions: its top 4 hold less than half of its
# energy, while a rank-4 adapter got about 90% of the improvement in section 4. Both can be
# true, because energy is not usefulness. Full fine-tuning is free to move every weight in
# every direction, and nothing keeps its update small; the sweep shows that a few
# directions are enough for most of the gain. So a full update's spectrum gives an upper
# bound on the rank a task needs, and the rank sweep of section 4 is the sharper test. (The
# paper's claim is about models thousands of times larger, whose updates are reported to
# be far more concentrated.)
#
# ## 6. Do adapters of different rank learn the same directions?
#
# Hu et al. (Section 7.2) compare the $A$ matrices of a rank-8 and a rank-64 adapter of the
# same layer: $\varphi(i, j) = \lVert U_i^\top V_j \rVert_F^2 / \min(i, j)$, where $U_i$ holds
# the top-$i$ right-singular vectors of the first and $V_j$ the top-$j$ of the second.
# $\varphi = 1$ when one subspace contains the other, 0 when they are orthogonal. Random
# subspaces of $\mathbb{R}^d$ already give $\max(i, j)/d$ on average, and that is the
# baseline to beat. We compare rank 8 (or the smallest rank $\ge 4$ below the largest) with
# the largest rank, by handing the figure function just those two runs.

# %%
by_rank = {r["rank"]: r for r in domain_runs if r["method"] == "lora"}
large = max(by_rank)
small = 8 if 8 in by_rank and 8 < large else min((r for r in by_rank if 4 <= r < large), default=min(by_rank))
show_png(plots.figure_subspace_similarity([by_rank[small], by_rank[large]]), "subspace_similarity_pair",
         width=950)

for layer, A_small in by_rank[small]["analysis"]["adapter_A"].items():
    A_small = np.asarray(A_small)                                          # (r_small, in)
    A_large = np.asarray(by_rank[large]["analysis"]["adapter_A"][layer])   # (r_large, in)
    grid = analysis.subspace_similarity_grid(A_small, A_large)             # (r_small, r_large)
    d = A_small.shape[1]
    print(f"{layer}:  φ(1, 1) = {grid[0, 0]:.2f} (random {analysis.random_subspace_similarity(d, 1, 1):.3f})"
          f"   φ(1, {large}) = {grid[0, -1]:.2f}   φ({small}, {large}) = {grid[-1, -1]:.2f}"
          f" (random, both: {analysis.random_subspace_similarity(d, small, large):.2f})")

# %% [markdown]
# Compare each number with its random baseline, not with 1. **What to look for:** in the
# paper (GPT-3, rank 8 against 64) the single top direction is shared, a bright first column.
# In the full sweep here (rank 8 against 32) it is shared too, far above chance:
# $\varphi(1, 1)$ is about 0.2 for `q_proj` and about 0.6 for `v_proj`, where random
# directions give 0.008, and the rank-8 adapter's whole subspace sits inside the rank-32
# one's at about twice the baseline. Two adapters trained separately, from different random
# starts, find overlapping directions. That is the paper's argument that a larger $r$ mostly
# adds directions the smaller one could do without, and it fits the flat curve of section 4.
# (Fast mode compares ranks 4 and 8 after 25 steps, so its numbers are rougher.) With more
# steps or another rank pair the numbers move; with several seeds, `--seeds 0,1,2`, you can
# see how much.
#
# ## 7. $\alpha/r$ or $\alpha/\sqrt{r}$?
#
# LoRA scales the update by $\alpha/r$. At initialisation that changes nothing ($B = 0$, so
# $sBA = 0$ whatever $s$). What it changes is the size of each training step in $\Delta W$.
# Under Adam every entry of $B$ moves by about lr per step, and the change of $BAx$ is a sum
# of $r$ terms, which grows like $\sqrt r$ (not $r$) when their signs are independent. So
# with $A$ drawn at a scale independent of $r$ (the `kaiming` init, which the domain task
# uses), $\alpha/r$ makes a step in $\Delta W$ shrink like $1/\sqrt r$: at a fixed learning
# rate a large-rank adapter learns as if its learning rate were smaller. tinylora's default
# `gaussian` init draws $A$ at scale $1/r$ on top of that, so there the step shrinks like
# $r^{-3/2}$. Notebook 03, section 3, measures both exponents on one layer. rsLoRA
# (Kalajdzievski 2023, [arXiv:2312.03732](https://arxiv.org/abs/2312.03732)) derives
# $\alpha/\sqrt{r}$ as the scale that keeps learning stable as $r$ grows (with a
# rank-independent init), so that large ranks do not learn more slowly and a learning rate
# tuned at one rank still works at another. The `scaling` task trains the domain task at
# each rank under both rules,
# with the same learning rate. It needs six more runs, so it runs only in full mode.

# %%
if FAST:
    print("Skipped in fast mode (six more runs, about a minute). To see it, run the notebook without\n"
          "TINYLORA_FAST=1, or from a terminal:\n"
          "    tinylora sweep --task scaling --ranks 1,4,16 --out runs/scaling")
else:
    scaling_out = OUT + "-scaling"
    scaling_results = run_sweep(SweepConfig(tasks=("scaling",), ranks=(1, 4, 16)), scaling_out,
                                progress=False)
    show_png(plots.figure_scaling(scaling_results), "scaling")
    for row in plots.summarize(scaling_results):
        rule = "α/√r (rsLoRA)" if row["rslora"] else "α/r   (LoRA)  "
        print(f"{rule}  r={row['rank']:2d}  held-out loss {row['mean']:.4f}")

# %% [markdown]
# **What to look for.** At $r = 1$ the two rules give the same scale, so the two curves start
# at the same point. At $r = 16$, $\alpha/\sqrt{r}$ multiplies the update by 4 where $\alpha/r$
# multiplies it by 1, and under Adam that makes every early step in $\Delta W$ four times
# larger: to first order, the same as a learning rate four times larger (notebook 03 measures
# how $\alpha$ and the learning rate trade). The sweep's
# learning rate for this task (`2e-2`) was tuned for $\alpha/r$, so the question the figure
# answers is whether that larger step helps (the large ranks finally use their capacity) or
# overshoots (the loss gets worse as $r$ grows, possibly above the frozen base). Neither rule
# is free of tuning: to compare them fairly, also try rsLoRA at a smaller learning rate,
# `tinylora sweep --task domain --rslora --lr 1e-2 --ranks 1,4,16 --out runs/rslora`.
#
# ## 8. What each rank costs
#
# An adapter on an (out × in) layer trains $r\,(\text{in} + \text{out})$ numbers: linear in
# $r$, and tiny next to the $\text{in} \cdot \text{out}$ of the layer itself. What must be
# saved per task shrinks the same way.

# %%
Image(filename=os.path.join(FIGURES, "parameters_vs_rank.png"), width=950)

# %%
print(f"{'':16s} {'trainable':>10} {'file bytes':>11} {'vs full checkpoint':>19}")
for r in sorted((r for r in domain_runs if r["method"] == "lora"), key=lambda r: r["rank"]):
    ratio = r["full_checkpoint_bytes"] / r["adapter_bytes"]
    print(f"LoRA r={r['rank']:<9d} {r['trainable_params']:10,d} {r['adapter_bytes']:11,d} "
          f"{ratio:16.0f}x smaller")
print(f"{'full checkpoint':16s} {full_run['trainable_params']:10,d} {full_run['full_checkpoint_bytes']:11,d}")

# %% [markdown]
# Put this next to section 4: each doubling of $r$ doubles the cost, so the useful rank is the
# one after which the loss curve stops paying for the doubling (on the recipe cards, in the
# full sweep, about 4 to 8). On a model with billions of parameters the same arithmetic turns
# a checkpoint of many gigabytes into an adapter of a few megabytes.
#
# ## Check yourself
#
# 1. Why must the planted task's error have a knee at $r = k^*$? Why does that knee not show
#    that real fine-tuning updates are low rank?
# 2. A LoRA adapter of rank 8 on `q_proj` and `v_proj` (each 128 × 128) in all 4 blocks: how
#    many trainable parameters?
# 3. Why is $\Delta W$'s spectrum compared with a random matrix of the same shape and norm,
#    rather than judged on its own?
# 4. On the recipe cards a rank-4 adapter on `q`, `v` gets about 90% of full fine-tuning's
#    improvement. Why? And why did the same adapter fall far short with a base model that had
#    read few recipes? Name two things full fine-tuning can change that the adapter cannot.
# 5. Two adapters on a layer with $d = 128$ inputs, of rank 8 and 32, give $\varphi(8, 32) = 0.3$.
#    Is that evidence of a shared subspace?
# 6. With $\alpha = 16$ fixed, what is the scale of the update at $r = 1$ and $r = 16$ under
#    $\alpha/r$, and under $\alpha/\sqrt{r}$?
# 7. You re-run `tinylora sweep --out DIR` after it was interrupted at run 9 of 14. What happens?
#
# <details><summary>Answers</summary>
#
# 1. A rank-$r$ $\Delta W$ can equal the rank-$k^*$ $\Delta W^*$ only if $r \ge k^*$ (by
#    Eckart–Young the best rank-$r$ approximation leaves the energy of $k^* - r$ directions
#    out). The update was planted low rank by construction; it says nothing about what
#    fine-tuning on real data produces.
# 2. $8 \text{ layers} \times 8 \times (128 + 128) = 16{,}384$, about 2 % of the model.
# 3. "The singular values decay" is true of every matrix, random ones included
#    (Marchenko–Pastur). Only a decay much faster than a structure-free matrix of the same
#    size and energy shows a low intrinsic rank.
# 4. The base model already knows what the recipes say (it read them in the cookbook); the
#    cards only change the layout, and re-routing known content is a small change to the
#    attention projections. A base that had read few recipes needs new knowledge: words,
#    quantities, dishes. A character model keeps that in its embeddings, its MLPs and its
#    output layer (and full fine-tuning also changes the layer norms), which LoRA on `q`, `v`
#    leaves frozen. Adapting every linear layer (`--targets all-linear`) tests how much of a
#    gap comes from where the adapter sits.
# 5. Barely: random subspaces give $\max(8, 32)/128 = 0.25$ on average. Only values well
#    above 0.25 indicate shared directions.
# 6. $\alpha/r$: 16 and 1. $\alpha/\sqrt{r}$: 16 and 4.
# 7. It reads `DIR/results.jsonl`, skips the 8 finished runs (their ids match) and runs the
#    remaining 6; a run cut short leaves no line, so it is simply run again.
# </details>
