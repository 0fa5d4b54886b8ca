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
# # 01 · Autograd: from a derivative by hand to the engine
#
# Training a network means nudging every weight a little in the direction that lowers the loss.
# For that we need the **derivative of the loss with respect to every weight** — hundreds of
# thousands of them for the small GPT in notebook 02. Working them out by hand is impossible,
# and estimating each one numerically is far too slow. An *autograd engine* gets all of them
# in one backward pass that costs about as much as the forward pass.
#
# This notebook builds the idea up in steps:
#
# 1. a derivative by hand, and a numerical estimate to check it;
# 2. the same function through `tinylora.Tensor`, which records a **graph**;
# 3. a picture of that graph, and the **topological order** `backward()` walks;
# 4. why gradients are **accumulated** (`+=`), not assigned;
# 5. **broadcasting**, and how its gradient is summed back;
# 6. **gradcheck**, and what its failure looks like on a deliberately broken op;
# 7. `no_grad`, and why tensors are **float32** by default.
#
# The engine itself is `tinylora/tensor.py`: keep it open beside this notebook.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import tinylora
from tinylora import Tensor, gradcheck, no_grad
from tinylora.tensor import topological_order, unbroadcast

FAST = os.environ.get("TINYLORA_FAST") == "1"
np.set_printoptions(precision=4, suppress=True)
print(f"tinylora {tinylora.__version__}; fast mode: {FAST}")


# %% [markdown]
# **Running time, measured** on the test machine (2 CPU cores shared with other jobs, load about
# 20): 6 s in fast mode (`TINYLORA_FAST=1`, which the test suite sets) and 6 s in full mode,
# most of it starting the kernel; the kernel used about 1 s of CPU time in either mode, which
# is about what the notebook takes on a laptop with a free core. `FAST` changes nothing here;
# the other notebooks use it to shrink their loops.

# %% [markdown]
# ## 1. A derivative by hand
#
# Take $f(x) = x^2 \sin x$. The product rule gives
#
# $$f'(x) = 2x\sin x + x^2\cos x .$$
#
# Can we trust it? The definition of the derivative suggests a check: move $x$ by a small $h$
# and see how much $f$ moves. The **central difference** $\frac{f(x+h) - f(x-h)}{2h}$ is far
# more accurate than the one-sided $\frac{f(x+h) - f(x)}{h}$: its error shrinks like $h^2$
# rather than $h$ (the $h^2$ terms of the two Taylor expansions cancel).

# %%
def f(x):
    return x**2 * np.sin(x)


def f_prime(x):
    return 2 * x * np.sin(x) + x**2 * np.cos(x)   # product rule


x0 = 2.0
for h in (1e-1, 1e-3, 1e-6):
    forward = (f(x0 + h) - f(x0)) / h
    central = (f(x0 + h) - f(x0 - h)) / (2 * h)
    print(f"h={h:.0e}  forward {forward:.10f}   central {central:.10f}   analytic {f_prime(x0):.10f}")

# %% [markdown]
# Smaller $h$ is not always better. Below some size, $f(x+h)$ and $f(x-h)$ agree in almost all
# their digits, and subtracting them leaves mostly **round-off**: the error grows again like
# $\varepsilon_{\text{machine}} / h$. The picture shows both regimes.

# %%
hs = np.logspace(-15, -1, 57)
forward_err = np.abs((f(x0 + hs) - f(x0)) / hs - f_prime(x0))
central_err = np.abs((f(x0 + hs) - f(x0 - hs)) / (2 * hs) - f_prime(x0))

fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.loglog(hs, forward_err, "o-", ms=3, label="forward difference (error ~ h)")
ax.loglog(hs, central_err, "s-", ms=3, label="central difference (error ~ h²)")
ax.axvline(1e-6, color="grey", ls=":", label="h = 1e-6, used by gradcheck")
ax.set(xlabel="step h", ylabel="|numeric − analytic|", title="f(x) = x² sin x at x = 2 (float64)")
ax.legend(fontsize=8)
plt.show()


# %% [markdown]
# A numerical derivative needs **two evaluations of the whole function per weight**. For a model
# with a million weights that is two million forward passes per step. Autograd instead
# computes every derivative exactly, in one backward pass, by applying the chain rule to a
# record of how the output was computed.
#
# ## 2. The same function through the engine
#
# A `Tensor` holds an array and, when it was produced by an op, remembers its inputs
# (`parents`) and a small backward function that turns the gradient of the output into a
# gradient for each input. `tinylora` has no `sin` op, which is a good excuse to see how an op
# is made: compute the value, and beside it give the local derivative. The public constructor
# `Tensor.from_op(data, parents, backward)` wraps the value and records the graph (only when an
# input needs a gradient).

# %%
def sin(t):
    """sin as an engine op: forward value, and beside it the local derivative cos."""
    xp = t.xp                      # numpy or cupy: the module that owns t's array
    x = t.data
    return Tensor.from_op(xp.sin(x), (t,), lambda g: (g * xp.cos(x),))


x = Tensor(2.0, requires_grad=True, dtype=np.float64)
y = x * x * sin(x)
print("y      =", y)
print("y remembers its inputs:", [round(p.item(), 4) for p in y.parents], " <- x*x = 4 and sin(2)")
y.backward()
print("x.grad =", x.grad, "   analytic:", f_prime(2.0))

# %% [markdown]
# The engine's answer matches the product rule to every printed digit — and we never wrote
# $2x\sin x + x^2\cos x$ anywhere: each op only knew its own local derivative.
#
# ## 3. Drawing the graph
#
# A picture makes the record concrete. The helpers below walk `parents` from the output,
# give each node a *depth* (inputs at depth 0, every op one more than its deepest input) and
# lay the nodes out left to right by depth. Within a column, each node is placed at the mean
# height of its neighbours in the column before (and then after), a few sweeps back and
# forth, which keeps edges from crossing; `crossing_edges` counts the crossings that remain.
# An op that uses the same input twice, such as `x * x`, has that input twice in its
# `parents`, so it gets two arrows, bent apart so that both can be seen. The op's name is
# `op_name`, the name of the function whose backward made the node (e.g. `"__mul__"` → `×`;
# `None` for an input). Note that we draw **before** calling `backward()`: by default
# `backward()` releases the graph to free memory.

# %%
OP_SYMBOLS = {"__add__": "+", "__sub__": "−", "__mul__": "×", "__truediv__": "÷",
              "__matmul__": "@", "__pow__": "**", "__neg__": "neg"}


def op_label(node):
    if node.op_name is None:
        return "input" if node.requires_grad else "constant"
    return OP_SYMBOLS.get(node.op_name, node.op_name)


def graph_nodes(root):
    """Every node reachable through parents, with its depth (inputs = 0)."""
    depth = {}

    def visit(node):
        if id(node) not in depth:
            depth[id(node)] = (node, 1 + max((visit(p) for p in node.parents), default=-1))
        return depth[id(node)][1]
    visit(root)
    return list(depth.values())


def layout(nodes, sweeps=4):
    """(depth, height) per node id. Columns by depth; within a column, nodes are ordered by the mean
    height of their neighbours in the column before (then after), which uncrosses most edges."""
    columns = {}
    for node, d in nodes:
        columns.setdefault(d, []).append(node)
    users = {}
    for node, _ in nodes:
        for parent in node.parents:
            users.setdefault(id(parent), []).append(node)
    height = {id(n): i - (len(c) - 1) / 2 for c in columns.values() for i, n in enumerate(c)}
    for sweep in range(sweeps):
        forward = sweep % 2 == 0                    # left to right: look at parents; then back: at users
        for d in sorted(columns, reverse=not forward):
            def mean_neighbour(n):
                near = n.parents if forward else users.get(id(n), [])
                return np.mean([height[id(m)] for m in near]) if near else height[id(n)]
            column = columns[d] = sorted(columns[d], key=mean_neighbour)
            height.update({id(n): i - (len(column) - 1) / 2 for i, n in enumerate(column)})
    return {id(n): (d, height[id(n)]) for n, d in nodes}


def draw_graph(root, names, ax, title=""):
    """Nodes laid out by depth, arrows from each input to the op that uses it. An input used twice
    by one op (x · x) gets two arrows, bent apart so that both show."""
    nodes = graph_nodes(root)
    position = layout(nodes)
    for node, _ in nodes:
        for parent in set(node.parents):
            n_edges = sum(p is parent for p in node.parents)
            for k in range(n_edges):
                bend = 0.35 * (k - (n_edges - 1) / 2)   # 0 for a single edge; ±0.17 for two
                ax.annotate("", xy=position[id(node)], xytext=position[id(parent)],
                            arrowprops=dict(arrowstyle="->", color="grey", shrinkA=18, shrinkB=18,
                                            connectionstyle=f"arc3,rad={bend}"))
    for node, _ in nodes:
        value = f"{node.item():.3g}" if node.size == 1 else f"shape {node.shape}"
        name = names.get(id(node), op_label(node))
        colour = "#cfe8ff" if node.op_name is None else "#ffe3b3"
        ax.text(*position[id(node)], f"{name}\n{value}", ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round", fc=colour, ec="black"))
    depths = [p[0] for p in position.values()]
    heights = [p[1] for p in position.values()]
    ax.set_xlim(-0.6, max(depths) + 0.6)
    ax.set_ylim(min(heights) - 0.8, max(heights) + 0.8)
    ax.set_title(title)
    ax.axis("off")


def crossing_edges(root, sweeps=4):
    """Pairs of edges between the same two columns whose ends are in opposite order: they cross."""
    nodes = graph_nodes(root)
    position = layout(nodes, sweeps)
    edges = [(position[id(p)], position[id(n)]) for n, _ in nodes for p in n.parents]
    return sum(1 for i, (a, b) in enumerate(edges) for c, e in edges[i + 1:]
               if a[0] == c[0] and b[0] == e[0] and (a[1] - c[1]) * (b[1] - e[1]) < 0)


# %%
a = Tensor(2.0, requires_grad=True)
b = Tensor(-1.5, requires_grad=True)
c = Tensor(0.5, requires_grad=True)
out = (a * b + c).tanh()

x = Tensor(2.0, requires_grad=True, dtype=np.float64)
y = x * x * sin(x)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
draw_graph(out, {id(a): "a", id(b): "b", id(c): "c"}, axes[0], "out = tanh(a·b + c)")
draw_graph(y, {id(x): "x"}, axes[1], "y = x · x · sin(x): x is used three times")
plt.show()
x_squared = y.parents[0]                              # the node x · x
print(f"arrows from x into x·x: {sum(p is x for p in x_squared.parents)} (drawn bent apart); "
      f"crossing edges: {crossing_edges(out)} and {crossing_edges(y)}")

# %%
import importlib.util

if importlib.util.find_spec("graphviz") is None:
    print("graphviz is not installed; the matplotlib drawing above is all we need.")
else:
    print("graphviz is installed: the same node and edge lists could be handed to graphviz.Digraph.")

# %% [markdown]
# ## 4. Topological order: who goes first in backward?
#
# The chain rule says: the gradient of a node is complete only once **every** op that used it
# has passed its contribution back. So `backward()` visits nodes in *reverse topological
# order* — outputs before the ops that produced them, each node only after all of its users.
# `tinylora.tensor.topological_order` produces the forward order (inputs first) with a
# depth-first search; `backward()` walks it reversed.

# %%
names = {id(a): "a", id(b): "b", id(c): "c"}
order = topological_order(out)
print("forward order :", " → ".join(names.get(id(n), op_label(n)) for n in order))
print("backward order:", " → ".join(names.get(id(n), op_label(n)) for n in reversed(order)))

out.backward()
t = np.tanh(2.0 * -1.5 + 0.5)
print(f"a.grad = {a.grad:.4f}   by hand (1 - tanh²)·b = {(1 - t**2) * -1.5:.4f}")
print(f"b.grad = {b.grad:.4f}   by hand (1 - tanh²)·a = {(1 - t**2) * 2.0:.4f}")
print(f"c.grad = {c.grad:.4f}   by hand (1 - tanh²)   = {(1 - t**2):.4f}")
print("after backward the graph is released: out.parents =", out.parents)

# %% [markdown]
# ## 5. Why gradients accumulate
#
# In `x * x` the *same* tensor is both inputs of the multiply. Its backward returns two
# gradients, `g·x` for the left input and `g·x` for the right one, and both belong to `x`.
# If the engine **assigned** them, the second would overwrite the first and we would get $x$
# instead of $2x$. So every contribution is **added**.
#
# The same happens in a *diamond*: $x$ feeds two branches that meet again,
# $y = (3x)\cdot(x^2)$. The gradient reaches $x$ along both paths, and the chain rule says
# the total is the sum of the paths: $3 \cdot x^2 + 3x \cdot 2x = 9x^2$.

# %%
x = Tensor(3.0, requires_grad=True)
(x * x).backward()
print(f"d(x·x)/dx at 3: {x.grad}   (2x = 6; overwriting instead of adding would give 3)")

x = Tensor(2.0, requires_grad=True)
left, right = x * 3, x * x            # two branches out of x ...
y = left * right                      # ... that meet again
fig, ax = plt.subplots(figsize=(5.5, 2.4))
draw_graph(y, {id(x): "x"}, ax, "a diamond: two paths from x to y")
plt.show()
print(f"crossing edges: {crossing_edges(y)} (nodes in the order they were found, without the sweeps: "
      f"{crossing_edges(y, sweeps=0)})")

via_left = right.item() * 3           # dy/dleft · dleft/dx
via_right = left.item() * 2 * 2.0     # dy/dright · dright/dx
y.backward()
print(f"path through 3x: {via_left}, path through x²: {via_right}, sum {via_left + via_right}; "
      f"engine: {x.grad}")

# %% [markdown]
# Accumulation has a consequence you must remember in every training loop: calling
# `backward()` a second time **adds to** the gradients already there. That is why optimizers
# have `zero_grad()`. (To go backward through the same graph twice we must keep it with
# `retain_graph=True`.)

# %%
w = Tensor(1.5, requires_grad=True)
loss = w * w * 4
loss.backward(retain_graph=True)
print("after one backward :", w.grad)
loss.backward()
print("after two backwards:", w.grad, " <- doubled: forgot to zero the gradient")
w.grad = None

# %% [markdown]
# ## 6. Broadcasting, and its gradient
#
# NumPy lets a (3, 1) column and a (1, 4) row combine into a (3, 4) table: each is silently
# *copied* along its size-1 axis. A copied value influences every cell it was copied into, so
# its gradient is the **sum** over those cells. The engine does this in one shared helper,
# `tinylora.tensor.unbroadcast`, that sums a gradient back down to an input's shape.

# %%
rng = np.random.default_rng(0)
col = Tensor(rng.normal(size=(3, 1)), requires_grad=True)   # (3, 1)
row = Tensor(rng.normal(size=(1, 4)), requires_grad=True)   # (1, 4)
table = col + row                                           # (3, 4)
print("shapes:", col.shape, "+", row.shape, "->", table.shape)

weights = np.arange(12.0).reshape(3, 4)
(table * weights).sum().backward()
print("col.grad (sums of each row of weights):", col.grad.ravel(), " check:", weights.sum(axis=1))
print("row.grad (sums of each column)        :", row.grad.ravel(), " check:", weights.sum(axis=0))
print("unbroadcast(ones (3, 4), (1, 4))      :", unbroadcast(np.ones((3, 4)), (1, 4)))

# %% [markdown]
# ## 7. gradcheck: trust, but verify
#
# Every op's backward is hand-written, so every op can be wrong. `tinylora.gradcheck(fn, *inputs)`
# compares the engine's gradient with central differences for **every element of every input**.
# It runs in float64 (section 8 explains why) and uses a random, non-uniform upstream gradient
# so that an error cannot hide behind a sum of ones.

# %%
A = Tensor(rng.normal(size=(3, 4)), requires_grad=True, dtype=np.float64)
B = Tensor(rng.normal(size=(4, 2)), requires_grad=True, dtype=np.float64)
print("tanh(A @ B):", gradcheck(lambda p, q: (p @ q).tanh(), A, B))
print("our sin op :", gradcheck(sin, Tensor(rng.normal(size=5), requires_grad=True, dtype=np.float64)))


# %% [markdown]
# Now a deliberately broken op: a square whose backward forgets the factor 2. The forward
# value is right, so nothing looks wrong until you check the gradient. This is what
# gradcheck's failure message looks like: it names the input, the element, and both numbers.

# %%
def sloppy_square(t):
    """t**2 with a planted bug: the backward returns g·x instead of 2·g·x."""
    x = t.data
    return Tensor.from_op(x * x, (t,), lambda g: (g * x,))


v = Tensor([[0.5, -1.0], [2.0, 3.0]], requires_grad=True, dtype=np.float64)
print("forward is fine:", sloppy_square(v).data.ravel())
try:
    gradcheck(sloppy_square, v)
except AssertionError as err:
    print("AssertionError:", err)

# %% [markdown]
# ## 8. `no_grad` and float32
#
# Recording the graph costs memory: every op keeps its inputs alive until `backward()`. When
# we only evaluate (validation loss, sampling text), nothing will go backward, so we switch
# recording off with `no_grad()`.

# %%
w = Tensor(np.ones(3), requires_grad=True)
recorded = (w * 2).sum()
with no_grad():
    skipped = (w * 2).sum()
print("recorded: requires_grad =", recorded.requires_grad, ", parents:", len(recorded.parents))
print("no_grad : requires_grad =", skipped.requires_grad, ", parents:", len(skipped.parents))

# %% [markdown]
# Python floats become **float32** tensors, as in PyTorch. Half the memory and roughly twice
# the speed of float64, and GPUs are built for it; training never needs more than about seven
# significant digits. (A NumPy array keeps its own dtype.)
#
# But seven digits are not enough for *finite differences*: with $h = 10^{-6}$ the difference
# $f(x+h) - f(x-h)$ is below float32's resolution and the estimate is noise. That is why
# gradcheck insists on float64 — and refuses float32 with a message saying so.

# %%
print("Tensor(0.1).dtype              :", Tensor(0.1).dtype)
print("Tensor(np.array([0.1])).dtype  :", Tensor(np.array([0.1])).dtype)
print("float32 resolution near 1      :", np.finfo(np.float32).eps, " float64:", np.finfo(np.float64).eps)

for dtype in (np.float32, np.float64):
    x32, h = dtype(2.0), dtype(1e-6)
    estimate = (f(x32 + h) - f(x32 - h)) / (2 * h)
    print(f"central difference in {dtype.__name__}: {estimate:.6f}   (true {f_prime(2.0):.6f})")

try:
    gradcheck(sin, Tensor([1.0, 2.0], requires_grad=True))
except TypeError as err:
    print("TypeError:", err)

# %% [markdown]
# ## Check yourself
#
# 1. Why does the error of a finite difference grow again when $h$ gets very small?
# 2. In `y = x * x`, what would `x.grad` be if the engine assigned gradients instead of adding them?
# 3. `col` has shape (3, 1), `row` has shape (1, 4); what are `col.grad` and `row.grad` after
#    `(col + row).sum().backward()`?
# 4. Why must `backward()` process a node only after *all* of the ops that used it?
# 5. Why does gradcheck require float64 inputs, when training runs in float32?
# 6. What does `no_grad()` save, and when should you use it?
#
# <details><summary>Answers</summary>
#
# 1. $f(x+h)$ and $f(x-h)$ share almost all their digits; their difference is dominated by
#    round-off of size about $\varepsilon\,|f|$, and dividing by $2h$ magnifies it as $\varepsilon/h$.
# 2. `x` instead of `2x`: the second contribution would overwrite the first.
# 3. `col.grad` is a (3, 1) column of 4s and `row.grad` a (1, 4) row of 3s: each value was
#    copied into 4 (or 3) cells, and its gradient is the sum over them.
# 4. Its gradient is the sum of the contributions from all its users; until the last one has
#    been added, the gradient passed further back would be incomplete.
# 5. With float32's ~7 digits, $f(x \pm h)$ for $h=10^{-6}$ differ only in their last digits,
#    so the numerical estimate is noise; float64 has ~16 digits, enough for a clean difference.
# 6. The graph: the parents and backward closures that keep every intermediate array alive.
#    Use it whenever nothing will call `backward()` — evaluation and sampling.
# </details>
