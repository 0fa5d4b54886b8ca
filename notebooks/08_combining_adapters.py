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
# # 08 · Combining adapters, and what a LoRA update amplifies
#
# Two adapters trained on two tasks can be made into one with `add_weighted_adapter`. Every
# combination type is a statement about the update each adapter makes to a layer,
# $\Delta W = s\,BA$, so this notebook works on $\Delta W$ throughout:
#
# 1. the algebra of a merge: `cat` is exact, `svd` drops what its singular values say, `linear`
#    adds cross terms;
# 2. TIES and DARE on task vectors;
# 3. the merge lab: a recipes adapter and an arithmetic adapter on the same toy base, merged with
#    every type, with held-out loss on both tasks (from the committed results);
# 4. the LoRA paper's Table 7, read against its random baseline, with Fig. 8 and Fig. 4;
# 5. two exercises on TIES and DARE.
#
# **Time:** under a minute on a laptop; measured 26 s on 2 CPU cores shared with other work (3.5
# minutes at a heavier load). With `TINYLORA_FAST=1` (what the tests run) about 2 s, because the
# live merge-lab run of section 3 is skipped. The
# figures of sections 3 and 4 come from the sweeps committed in `docs/sweeps/`, the same ones
# [`docs/results.md`](../docs/results.md) shows.

# %%
import os
from pathlib import Path

import numpy as np
from IPython.display import Markdown, display

import tinylora
from tinylora.experiments import paper_figures
from tinylora.experiments.analysis import amplification_table, random_subspace_similarity
from tinylora.experiments.results import read_results
from tinylora.experiments.tasks import RunSpec, run
from tinylora.lora import LoraConfig, add_adapter, add_weighted_adapter, get_delta_weights
from tinylora.lora.merge import combine_tensors, prune_at_random
from tinylora.models import GPT, GPTConfig

FAST = os.environ.get("TINYLORA_FAST") == "1"
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()   # the repository
MERGE_LAB = ROOT / "docs" / "sweeps" / "merge-lab"              # tinylora sweep --task merge-lab --ranks 8
PAPER = ROOT / "docs" / "sweeps" / "paper-analyses"             # the domain task at r = 4 and 32, two seeds
np.set_printoptions(precision=4, suppress=True)
print(f"tinylora {tinylora.__version__}; fast mode: {FAST}")

# %% [markdown]
# ## 1. The algebra of a merge, on ΔW
#
# A small GPT in float64 with two rank-4 adapters whose A and B are both random
# (`init_lora_weights=False`), standing in for two trained ones. We look at one layer, the first
# block's `q_proj`, and at the update one usually wants from weights $(w_1, w_2)$:
# $\Delta W^* = w_1 \Delta W_1 + w_2 \Delta W_2$. Here $w = (1, -1)$: one adapter minus the other.

# %%
model = GPT(GPTConfig.preset("nano"), seed=0).to(np.float64)
for name, seed in [("recipes", 1), ("sums", 2)]:
    add_adapter(model, name, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, seed=seed))
LAYER = "blocks.0.attn.q_proj"


def delta(name):
    return get_delta_weights(model, name)[LAYER]                            # (out, in)


want = delta("recipes") - delta("sums")
for kind in ("cat", "svd", "linear"):
    add_weighted_adapter(model, ["recipes", "sums"], [1.0, -1.0], kind, combination_type=kind)
    rank = model.blocks[0].attn.q_proj.adapters[kind].config.r
    error = np.linalg.norm(delta(kind) - want) / np.linalg.norm(want)
    print(f"{kind:>6}: rank {rank}, ‖ΔW − ΔW*‖ / ‖ΔW*‖ = {error:.4f}")

# %% [markdown]
# **`cat`** stacks the factors, $A = [w_1 s_1 A_1;\ w_2 s_2 A_2]$ and $B = [B_1, B_2]$, so
# $BA = \Delta W^*$ exactly, at the price of rank $r_1 + r_2 = 8$.
#
# **`svd`** keeps the top $k$ singular directions of $\Delta W^*$ (here $k = 4$, the largest
# rank). By Eckart–Young its error is exactly what it drops,
# $\sqrt{\sum_{j > k} \sigma_j^2}$:

# %%
sigma = np.linalg.svd(want, compute_uv=False)
print("singular values of ΔW*:", sigma[:9])
print(f"dropped: {np.sqrt(np.sum(sigma[4:] ** 2)) / np.linalg.norm(want):.4f} of ‖ΔW*‖ (the svd error above)")

# %% [markdown]
# **`linear`** keeps rank 4 by adding factors: with $c_i = w_i s_i$,
# $A = \sum_i \mathrm{sign}(c_i)\sqrt{|c_i|}A_i$ and $B = \sum_i \sqrt{|c_i|}B_i$. Multiplying out,
# $BA$ has the wanted terms plus **cross terms** $B_i A_j$, one adapter's output directions fed
# by the other's input directions. For $w = (1, -1)$ and $s_1 = s_2 = s$ the product is
# $s(B_1 + B_2)(A_1 - A_2)$. We can build that from the adapters' own factors and compare:

# %%
q = model.blocks[0].attn.q_proj
A1, B1 = q.adapters["recipes"].lora_A.numpy(), q.adapters["recipes"].lora_B.numpy()   # (4, in), (out, 4)
A2, B2 = q.adapters["sums"].lora_A.numpy(), q.adapters["sums"].lora_B.numpy()
s = q.adapters["recipes"].scaling                                                 # α / r = 2
by_hand = s * (B1 + B2) @ (A1 - A2)
cross = s * (B2 @ A1 - B1 @ A2)
print("linear's ΔW == s·(B1 + B2)(A1 − A2):", np.allclose(delta("linear"), by_hand))
print(f"cross terms: ‖s·(B2·A1 − B1·A2)‖ / ‖ΔW*‖ = {np.linalg.norm(cross) / np.linalg.norm(want):.3f}")

# %% [markdown]
# The cross terms are as large as the update itself: for two unrelated adapters `linear` is
# nowhere near $\Delta W^*$. This is the bug PEFT fixed in peft#3013, and
# `tests/test_lora_merge.py` pins it; [combining adapters](../docs/combining_adapters.md) has the
# whole algebra.
#
# ## 2. TIES and DARE, on task vectors
#
# Both methods were written for task vectors $T_i$, the updates themselves.
#
# **TIES** (Yadav et al., 2023) *trims* each $T_i$ to its largest entries, *elects* a sign per
# entry (the sign of $\sum_i T_i$), then takes the *disjoint mean* of the entries that agree
# with it. **DARE** (Yu et al., 2023) *drops* each entry with probability $1 - p$ and *rescales*
# the kept ones by $1/p$, so the expected vector is unchanged.

# %%
t1, t2 = np.array([1.0, -2.0, 0.5, 0.0]), np.array([3.0, 1.0, -1.0, 2.0])
print("linear:", combine_tensors([t1, t2], [1.0, 1.0], "linear"))
print("ties:  ", combine_tensors([t1, t2], [1.0, 1.0], "ties", density=1.0))
rng = np.random.default_rng(0)
draws = np.stack([prune_at_random(t2, 0.5, rng) for _ in range(4000)])
print("one DARE draw of t2 (p = 0.5):", draws[0], "; mean of 4000 draws:", draws.mean(axis=0).round(2))

# %% [markdown]
# Entry 1: both agree (+1, +3), TIES averages them to 2 where `linear` sums to 4. Entry 2: the
# elected sign is − (−2 + 1 < 0), so only −2 survives. Entry 4: only $t_2$ has it, and the
# mean over the one agreeing vector keeps all of it: disjoint entries are not halved.
#
# ## 3. The merge lab
#
# `tinylora sweep --task merge-lab` trains a rank-r adapter on the recipe cards and another on
# the sums, on the same toy base, and combines them with every combination type, with weights
# (1, 1). It measures each model's held-out loss on both tasks; the base, each single adapter
# and joint full fine-tuning on both corpora are the references. Here is the committed r = 8 run:

# %%
lab_results = read_results(MERGE_LAB)
display(Markdown(paper_figures.merge_lab_markdown(lab_results)))
display(paper_figures.figure_merge_lab(lab_results))

# %% [markdown]
# What to read off:
#
# - No combined adapter is as good as each task's own adapter on both tasks. The adapters
#   interfere: the recipes adapter alone ruins the sums, and even the exact sum `cat` inherits
#   part of that.
# - The factor types other than TIES (`linear`, `magnitude_prune`, `dare_linear`, `dare_ties`)
#   are worse than the base on both tasks. DARE on the factors drops entries of A and of B
#   independently, so the product is much noisier than DARE on ΔW (`dare_linear_svd`).
# - TIES does best: `ties` keeps the most of the sums, `ties_svd` the most of the recipes.
#
# The next cell runs one merge-lab run live (rank 4, the task's default 100 steps per adapter),
# except in fast mode. Its numbers differ from the table's (another rank), but the order of the
# methods is what to compare.

# %%
if FAST:
    print("fast mode: the live merge-lab run is skipped (about 40 s on an idle core)")
else:
    line = run(RunSpec(task="merge-lab", method="lora", rank=4, steps=100, lr=2e-2, init="kaiming"))
    live = line["merge_lab"]["losses"]
    for name, loss in sorted(live.items(), key=lambda item: sum(item[1].values())):
        print(f"{name:>20}: recipes {loss['recipes']:.3f}, arithmetic {loss['arithmetic']:.3f}")

# %% [markdown]
# ## 4. Table 7: does ΔW amplify what W already has?
#
# The LoRA paper projects $W_q$ onto an r-dimensional subspace, $\|U^\top W_q V^\top\|_F$, with
# $U, V$ the top-r singular directions of $\Delta W_q$ itself, of $W_q$ itself, or of a random
# matrix. A small value for $\Delta W_q$'s own directions means the update works where $W_q$ is
# weak; the amplification factor $\|\Delta W_q\|_F / \|U^\top W_q V^\top\|_F$ says how much it
# boosts them (21.5 at r = 4 on GPT-3). `amplification_table` computes one rank's columns; on a
# W built by hand the answers are known:

# %%
W = np.diag([10.0, 5.0, 1.0, 0.5])
row = amplification_table(np.diag([0.0, 0.0, 0.0, 2.0]), W, r=1)      # ΔW = 2 along W's weakest direction
print(row)

# %% [markdown]
# Now the toy model's $W_q$ (the last block's `q_proj`, 128 × 128), from the committed sweep:

# %%
paper_results = read_results(PAPER)
display(Markdown(paper_figures.paper_analyses_markdown(paper_results)))
display(paper_figures.figure_table7(paper_results))

# %% [markdown]
# **Reading it against the random baseline.** For independent random subspaces U (out, r) and
# V (in, r), $E\,\|U^\top W V\|_F^2 = \frac{r}{\text{out}} \cdot \frac{r}{\text{in}} \cdot \|W\|_F^2$,
# so the random column should sit near $\|W\|_F \cdot r / \sqrt{\text{out} \cdot \text{in}}$:

# %%
for r in paper_figures.table7_rows(paper_results):
    expected = r["weight_norm"] * r["rank"] / 128
    times = r["delta_directions"] / r["random_directions"]
    print(f"r = {r['rank']:>2}: random column {r['random_directions']:.3f}, expected about {expected:.3f}; "
          f"ΔWq's directions {r['delta_directions']:.3f} = {times:.2f}× random")

# %% [markdown]
# In GPT-3's 12,288-wide layer the random projection is tiny (0.02), and ΔWq's directions hold
# sixteen times more (0.32). In a 128-wide layer random subspaces already catch a good part of
# W, and ΔWq's directions hold only a little more than random ones: the update points at
# directions W barely uses. Both models agree that W's own top directions hold far more, and
# that the factor shrinks as r grows.
#
# Fig. 8 compares ΔWq's top-i output directions with Wq's top-j, and Fig. 4 two seeds' A at the
# same rank; chance is $\max(i, j)/d$:

# %%
display(paper_figures.figure_delta_weight_similarity(paper_results))
found = paper_figures.seed_similarity(paper_results)
for layer, grid in found["grids"].items():
    print(f"{layer}: φ(1, 1) = {grid[0, 0]:.2f} between seeds {found['seeds']} at r = {found['rank']} "
          f"(chance {random_subspace_similarity(found['d'], 1, 1):.3f})")
display(paper_figures.figure_seed_similarity(paper_results))

# %% [markdown]
# ## 5. Exercises
#
# Two graded homework notebooks go with this chapter: `notebooks/exercises/23_ties_merge.ipynb` (write
# TIES yourself) and `24_dare_linear.ipynb` (DARE's drop and rescale). The two below are shorter.
#
# **Exercise 1 (TIES).** Two task vectors $t_1 = (2, -1, 0, 3)$ and $t_2 = (-1, -1, 4, 1)$,
# weights (1, 1), density 1 (no trimming). Work out, on paper, the elected signs and the TIES
# merge; then run the cell. Which entry does `linear` shrink that TIES keeps whole?
#
# **Exercise 2 (DARE).** DARE keeps each entry with probability p and divides it by p. Show
# that $E[\tilde T] = T$, and that the variance of an entry is $T^2 (1 - p) / p$. Check both
# with 20,000 draws at p = 0.25. Why does dropping A and B *separately* (PEFT's `dare_linear`)
# give a noisier ΔW than dropping ΔW once?

# %%
t1, t2 = np.array([2.0, -1.0, 0.0, 3.0]), np.array([-1.0, -1.0, 4.0, 1.0])
print("ties:  ", combine_tensors([t1, t2], [1.0, 1.0], "ties", density=1.0))
print("linear:", combine_tensors([t1, t2], [1.0, 1.0], "linear"))
rng = np.random.default_rng(1)
T = np.array([1.0, -2.0, 0.5])
draws = np.stack([prune_at_random(T, 0.25, rng) for _ in range(2_000 if FAST else 20_000)])
print("mean:", draws.mean(axis=0).round(2), " variance:", draws.var(axis=0).round(2),
      " T²(1 − p)/p:", (T ** 2 * 0.75 / 0.25).round(2))
