"""Build the teaching notebooks from the cell sources below, with outputs stripped.

    python notebooks/_build.py            # (re)write every notebook this script owns
    python notebooks/_build.py --check    # exit 1 if a committed notebook differs from its source here

The notebooks are committed without outputs (execution_count null, outputs empty), so a diff
shows only what a person changed. Cell ids are fixed ("01-07"), so two builds are byte-identical.
Edit the text here, rebuild, and commit both this script and the .ipynb files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

SETUP_NOTE = '''\
`FAST` shrinks every loop so the notebook runs in well under a minute (the test suite sets
`TINYLORA_FAST=1`). Unset it for the full version, which takes a few minutes on a laptop CPU.'''


def md(source: str):
    return new_markdown_cell(dedent(source).strip("\n"))


def code(source: str):
    return new_code_cell(dedent(source).strip("\n"))


# =============================================================================================
# 01  The autograd engine
# =============================================================================================
NB01 = [
    md(r'''
    # 01 · Autograd: from a derivative by hand to the engine

    Training a network means nudging every weight a little in the direction that lowers the loss.
    For that we need the **derivative of the loss with respect to every weight** — hundreds of
    thousands of them for the small GPT in notebook 02. Working them out by hand is impossible,
    and estimating each one numerically is far too slow. An *autograd engine* gets all of them
    in one backward pass that costs about as much as the forward pass.

    This notebook builds the idea up in steps:

    1. a derivative by hand, and a numerical estimate to check it;
    2. the same function through `tinylora.Tensor`, which records a **graph**;
    3. a picture of that graph, and the **topological order** `backward()` walks;
    4. why gradients are **accumulated** (`+=`), not assigned;
    5. **broadcasting**, and how its gradient is summed back;
    6. **gradcheck**, and what its failure looks like on a deliberately broken op;
    7. `no_grad`, and why tensors are **float32** by default.

    The engine itself is `tinylora/tensor.py`: keep it open beside this notebook.
    '''),
    code('''
    import os

    import matplotlib.pyplot as plt
    import numpy as np

    import tinylora
    from tinylora import Tensor, gradcheck, no_grad
    from tinylora.tensor import _result, _topological_order, _unbroadcast

    FAST = os.environ.get("TINYLORA_FAST") == "1"
    np.set_printoptions(precision=4, suppress=True)
    print(f"tinylora {tinylora.__version__}; fast mode: {FAST}")
    '''),
    md(SETUP_NOTE),
    md(r'''
    ## 1. A derivative by hand

    Take $f(x) = x^2 \sin x$. The product rule gives

    $$f'(x) = 2x\sin x + x^2\cos x .$$

    Can we trust it? The definition of the derivative suggests a check: move $x$ by a small $h$
    and see how much $f$ moves. The **central difference** $\frac{f(x+h) - f(x-h)}{2h}$ is far
    more accurate than the one-sided $\frac{f(x+h) - f(x)}{h}$: its error shrinks like $h^2$
    rather than $h$ (the $h^2$ terms of the two Taylor expansions cancel).
    '''),
    code('''
    def f(x):
        return x**2 * np.sin(x)


    def f_prime(x):
        return 2 * x * np.sin(x) + x**2 * np.cos(x)   # product rule


    x0 = 2.0
    for h in (1e-1, 1e-3, 1e-6):
        forward = (f(x0 + h) - f(x0)) / h
        central = (f(x0 + h) - f(x0 - h)) / (2 * h)
        print(f"h={h:.0e}  forward {forward:.10f}   central {central:.10f}   analytic {f_prime(x0):.10f}")
    '''),
    md(r'''
    Smaller $h$ is not always better. Below some size, $f(x+h)$ and $f(x-h)$ agree in almost all
    their digits, and subtracting them leaves mostly **round-off**: the error grows again like
    $\varepsilon_{\text{machine}} / h$. The picture shows both regimes.
    '''),
    code('''
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
    '''),
    md(r'''
    A numerical derivative needs **two evaluations of the whole function per weight**. For a model
    with a million weights that is two million forward passes per step. Autograd instead
    computes every derivative exactly, in one backward pass, by applying the chain rule to a
    record of how the output was computed.

    ## 2. The same function through the engine

    A `Tensor` holds an array and, when it was produced by an op, remembers its inputs
    (`_parents`) and a small function `_backward` that turns the gradient of the output into a
    gradient for each input. `tinylora` has no `sin` op, which is a good excuse to see how an op
    is made: compute the value, and beside it give the local derivative. The helper
    `tinylora.tensor._result` wraps the value and records the graph (only when an input needs a
    gradient).
    '''),
    code('''
    def sin(t):
        """sin as an engine op: forward value, and beside it the local derivative cos."""
        xp = t.xp                      # numpy or cupy: the module that owns t's array
        x = t.data
        return _result(xp.sin(x), (t,), lambda g: (g * xp.cos(x),))


    x = Tensor(2.0, requires_grad=True, dtype=np.float64)
    y = x * x * sin(x)
    print("y      =", y)
    print("y remembers its inputs:", [round(p.item(), 4) for p in y._parents], " <- x*x = 4 and sin(2)")
    y.backward()
    print("x.grad =", x.grad, "   analytic:", f_prime(2.0))
    '''),
    md(r'''
    The engine's answer matches the product rule to every printed digit — and we never wrote
    $2x\sin x + x^2\cos x$ anywhere: each op only knew its own local derivative.

    ## 3. Drawing the graph

    A picture makes the record concrete. The helpers below walk `_parents` from the output,
    give each node a *depth* (inputs at depth 0, every op one more than its deepest input) and
    lay the nodes out left to right by depth. The op's name is read from its `_backward`
    function (e.g. `Tensor.__mul__.<locals>.backward` → `×`). Note that we draw **before**
    calling `backward()`: by default `backward()` releases the graph to free memory.
    '''),
    code('''
    OP_SYMBOLS = {"__add__": "+", "__sub__": "−", "__mul__": "×", "__truediv__": "÷",
                  "__matmul__": "@", "__pow__": "**", "__neg__": "neg"}


    def op_label(node):
        if node._backward is None:
            return "input" if node.requires_grad else "constant"
        name = node._backward.__qualname__.split(".<locals>")[0].split(".")[-1]
        return OP_SYMBOLS.get(name, name)


    def graph_nodes(root):
        """Every node reachable through _parents, with its depth (inputs = 0)."""
        depth = {}

        def visit(node):
            if id(node) not in depth:
                depth[id(node)] = (node, 1 + max((visit(p) for p in node._parents), default=-1))
            return depth[id(node)][1]
        visit(root)
        return list(depth.values())


    def draw_graph(root, names, ax, title=""):
        """Nodes laid out by depth, arrows from each input to the op that uses it."""
        nodes = graph_nodes(root)
        columns = {}
        for node, d in nodes:
            columns.setdefault(d, []).append(node)
        position = {}
        for d, column in columns.items():
            for i, node in enumerate(column):
                position[id(node)] = (d, i - (len(column) - 1) / 2)
        for node, _ in nodes:
            for parent in node._parents:
                ax.annotate("", xy=position[id(node)], xytext=position[id(parent)],
                            arrowprops=dict(arrowstyle="->", color="grey", shrinkA=18, shrinkB=18))
        for node, _ in nodes:
            value = f"{node.item():.3g}" if node.size == 1 else f"shape {node.shape}"
            name = names.get(id(node), op_label(node))
            colour = "#cfe8ff" if node._backward is None else "#ffe3b3"
            ax.text(*position[id(node)], f"{name}\\n{value}", ha="center", va="center", fontsize=9,
                    bbox=dict(boxstyle="round", fc=colour, ec="black"))
        ax.set_xlim(-0.6, max(columns) + 0.6)
        ax.set_ylim(-max(len(c) for c in columns.values()) / 2 - 0.3, max(len(c) for c in columns.values()) / 2 + 0.3)
        ax.set_title(title)
        ax.axis("off")
    '''),
    code('''
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
    '''),
    code('''
    import importlib.util

    if importlib.util.find_spec("graphviz") is None:
        print("graphviz is not installed; the matplotlib drawing above is all we need.")
    else:
        print("graphviz is installed: the same node and edge lists could be handed to graphviz.Digraph.")
    '''),
    md(r'''
    ## 4. Topological order: who goes first in backward?

    The chain rule says: the gradient of a node is complete only once **every** op that used it
    has passed its contribution back. So `backward()` visits nodes in *reverse topological
    order* — outputs before the ops that produced them, each node only after all of its users.
    `tinylora.tensor._topological_order` produces the forward order (inputs first) with a
    depth-first search; `backward()` walks it reversed.
    '''),
    code('''
    names = {id(a): "a", id(b): "b", id(c): "c"}
    order = _topological_order(out)
    print("forward order :", " → ".join(names.get(id(n), op_label(n)) for n in order))
    print("backward order:", " → ".join(names.get(id(n), op_label(n)) for n in reversed(order)))

    out.backward()
    t = np.tanh(2.0 * -1.5 + 0.5)
    print(f"a.grad = {a.grad:.4f}   by hand (1 - tanh²)·b = {(1 - t**2) * -1.5:.4f}")
    print(f"b.grad = {b.grad:.4f}   by hand (1 - tanh²)·a = {(1 - t**2) * 2.0:.4f}")
    print(f"c.grad = {c.grad:.4f}   by hand (1 - tanh²)   = {(1 - t**2):.4f}")
    print("after backward the graph is released: out._parents =", out._parents)
    '''),
    md(r'''
    ## 5. Why gradients accumulate

    In `x * x` the *same* tensor is both inputs of the multiply. Its backward returns two
    gradients, `g·x` for the left input and `g·x` for the right one, and both belong to `x`.
    If the engine **assigned** them, the second would overwrite the first and we would get $x$
    instead of $2x$. So every contribution is **added**.

    The same happens in a *diamond*: $x$ feeds two branches that meet again,
    $y = (3x)\cdot(x^2)$. The gradient reaches $x$ along both paths, and the chain rule says
    the total is the sum of the paths: $3 \cdot x^2 + 3x \cdot 2x = 9x^2$.
    '''),
    code('''
    x = Tensor(3.0, requires_grad=True)
    (x * x).backward()
    print(f"d(x·x)/dx at 3: {x.grad}   (2x = 6; overwriting instead of adding would give 3)")

    x = Tensor(2.0, requires_grad=True)
    left, right = x * 3, x * x            # two branches out of x ...
    y = left * right                      # ... that meet again
    fig, ax = plt.subplots(figsize=(5.5, 2.4))
    draw_graph(y, {id(x): "x"}, ax, "a diamond: two paths from x to y")
    plt.show()

    via_left = right.item() * 3           # dy/dleft · dleft/dx
    via_right = left.item() * 2 * 2.0     # dy/dright · dright/dx
    y.backward()
    print(f"path through 3x: {via_left}, path through x²: {via_right}, sum {via_left + via_right}; engine: {x.grad}")
    '''),
    md(r'''
    Accumulation has a consequence you must remember in every training loop: calling
    `backward()` a second time **adds to** the gradients already there. That is why optimizers
    have `zero_grad()`. (To go backward through the same graph twice we must keep it with
    `retain_graph=True`.)
    '''),
    code('''
    w = Tensor(1.5, requires_grad=True)
    loss = w * w * 4
    loss.backward(retain_graph=True)
    print("after one backward :", w.grad)
    loss.backward()
    print("after two backwards:", w.grad, " <- doubled: forgot to zero the gradient")
    w.grad = None
    '''),
    md(r'''
    ## 6. Broadcasting, and its gradient

    NumPy lets a (3, 1) column and a (1, 4) row combine into a (3, 4) table: each is silently
    *copied* along its size-1 axis. A copied value influences every cell it was copied into, so
    its gradient is the **sum** over those cells. The engine does this in one shared helper,
    `_unbroadcast`, that sums a gradient back down to an input's shape.
    '''),
    code('''
    rng = np.random.default_rng(0)
    col = Tensor(rng.normal(size=(3, 1)), requires_grad=True)   # (3, 1)
    row = Tensor(rng.normal(size=(1, 4)), requires_grad=True)   # (1, 4)
    table = col + row                                           # (3, 4)
    print("shapes:", col.shape, "+", row.shape, "->", table.shape)

    weights = np.arange(12.0).reshape(3, 4)
    (table * weights).sum().backward()
    print("col.grad (sums of each row of weights):", col.grad.ravel(), " check:", weights.sum(axis=1))
    print("row.grad (sums of each column)        :", row.grad.ravel(), " check:", weights.sum(axis=0))
    print("_unbroadcast(ones (3, 4), (1, 4))     :", _unbroadcast(np.ones((3, 4)), (1, 4)))
    '''),
    md(r'''
    ## 7. gradcheck: trust, but verify

    Every op's backward is hand-written, so every op can be wrong. `tinylora.gradcheck(fn, *inputs)`
    compares the engine's gradient with central differences for **every element of every input**.
    It runs in float64 (section 8 explains why) and uses a random, non-uniform upstream gradient
    so that an error cannot hide behind a sum of ones.
    '''),
    code('''
    A = Tensor(rng.normal(size=(3, 4)), requires_grad=True, dtype=np.float64)
    B = Tensor(rng.normal(size=(4, 2)), requires_grad=True, dtype=np.float64)
    print("tanh(A @ B):", gradcheck(lambda p, q: (p @ q).tanh(), A, B))
    print("our sin op :", gradcheck(sin, Tensor(rng.normal(size=5), requires_grad=True, dtype=np.float64)))
    '''),
    md(r'''
    Now a deliberately broken op: a square whose backward forgets the factor 2. The forward
    value is right, so nothing looks wrong until you check the gradient. This is what
    gradcheck's failure message looks like: it names the input, the element, and both numbers.
    '''),
    code('''
    def sloppy_square(t):
        """t**2 with a planted bug: the backward returns g·x instead of 2·g·x."""
        x = t.data
        return _result(x * x, (t,), lambda g: (g * x,))


    v = Tensor([[0.5, -1.0], [2.0, 3.0]], requires_grad=True, dtype=np.float64)
    print("forward is fine:", sloppy_square(v).data.ravel())
    try:
        gradcheck(sloppy_square, v)
    except AssertionError as err:
        print("AssertionError:", err)
    '''),
    md(r'''
    ## 8. `no_grad` and float32

    Recording the graph costs memory: every op keeps its inputs alive until `backward()`. When
    we only evaluate (validation loss, sampling text), nothing will go backward, so we switch
    recording off with `no_grad()`.
    '''),
    code('''
    w = Tensor(np.ones(3), requires_grad=True)
    recorded = (w * 2).sum()
    with no_grad():
        skipped = (w * 2).sum()
    print("recorded: requires_grad =", recorded.requires_grad, ", parents:", len(recorded._parents))
    print("no_grad : requires_grad =", skipped.requires_grad, ", parents:", len(skipped._parents))
    '''),
    md(r'''
    Python floats become **float32** tensors, as in PyTorch. Half the memory and roughly twice
    the speed of float64, and GPUs are built for it; training never needs more than about seven
    significant digits. (A NumPy array keeps its own dtype.)

    But seven digits are not enough for *finite differences*: with $h = 10^{-6}$ the difference
    $f(x+h) - f(x-h)$ is below float32's resolution and the estimate is noise. That is why
    gradcheck insists on float64 — and refuses float32 with a message saying so.
    '''),
    code('''
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
    '''),
    md(r'''
    ## Check yourself

    1. Why does the error of a finite difference grow again when $h$ gets very small?
    2. In `y = x * x`, what would `x.grad` be if the engine assigned gradients instead of adding them?
    3. `col` has shape (3, 1), `row` has shape (1, 4); what are `col.grad` and `row.grad` after `(col + row).sum().backward()`?
    4. Why must `backward()` process a node only after *all* of the ops that used it?
    5. Why does gradcheck require float64 inputs, when training runs in float32?
    6. What does `no_grad()` save, and when should you use it?

    <details><summary>Answers</summary>

    1. $f(x+h)$ and $f(x-h)$ share almost all their digits; their difference is dominated by
       round-off of size about $\varepsilon\,|f|$, and dividing by $2h$ magnifies it as $\varepsilon/h$.
    2. `x` instead of `2x`: the second contribution would overwrite the first.
    3. `col.grad` is a (3, 1) column of 4s and `row.grad` a (1, 4) row of 3s: each value was
       copied into 4 (or 3) cells, and its gradient is the sum over them.
    4. Its gradient is the sum of the contributions from all its users; until the last one has
       been added, the gradient passed further back would be incomplete.
    5. With float32's ~7 digits, $f(x \pm h)$ for $h=10^{-6}$ differ only in their last digits,
       so the numerical estimate is noise; float64 has ~16 digits, enough for a clean difference.
    6. The graph: the parents and backward closures that keep every intermediate array alive.
       Use it whenever nothing will call `backward()` — evaluation and sampling.
    </details>
    '''),
]


# =============================================================================================
# 02  The transformer
# =============================================================================================
NB02 = [
    md(r'''
    # 02 · The transformer: attention by hand, then a small GPT

    A language model reads text one character at a time and predicts the next one. To do that
    well, the prediction at position $t$ must be able to *look back* at earlier positions and
    pick out the useful ones. **Attention** is that look-back, and a GPT is a stack of
    attention and small MLPs.

    Plan: attention on a 4-token toy, by hand, with every shape printed; the same through
    `tinylora.functional.scaled_dot_product_attention`; one GPT block; the parameter table;
    training a small GPT on the fables corpus; sampling; and finally the **shipped base model**
    `load_base()`. Its loss on the same recipes in two layouts, one it has read and one it has
    not, shows the shift that LoRA will work on in notebook 03.
    '''),
    code('''
    import os
    import warnings

    import matplotlib.pyplot as plt
    import numpy as np

    import tinylora
    from tinylora import Tensor
    from tinylora import functional as F
    from tinylora.data import CharTokenizer, load_corpus, train_val_split
    from tinylora.gpt import GPT, GPTConfig
    from tinylora.pretrained import load_base
    from tinylora.train import estimate_loss, fit

    FAST = os.environ.get("TINYLORA_FAST") == "1"
    STEPS = 30 if FAST else 300
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook bar; we pass progress=False
    np.set_printoptions(precision=3, suppress=True)
    print(f"tinylora {tinylora.__version__}; fast mode: {FAST}; training steps: {STEPS}")
    '''),
    md(SETUP_NOTE),
    md(r'''
    ## 1. Attention by hand

    Four tokens, each already turned into a vector of size $d = 8$ (in a GPT these come from the
    embedding tables). Every token makes three vectors with three learned matrices:

    * a **query** $q$ — "what am I looking for?",
    * a **key** $k$ — "what do I contain?",
    * a **value** $v$ — "what do I hand over if chosen?".

    The score of token $t$ for token $s$ is the dot product $q_t \cdot k_s$, divided by
    $\sqrt{d}$ so that the scores keep a variance near 1 whatever the size $d$.
    '''),
    code('''
    rng = np.random.default_rng(0)
    tokens = ["The", "fox", "saw", "grapes"]
    T, d = len(tokens), 8
    x = rng.normal(size=(T, d))                                     # (T, d) token vectors
    W_q, W_k, W_v = (rng.normal(size=(d, d)) / np.sqrt(d) for _ in range(3))

    q, k, v = x @ W_q, x @ W_k, x @ W_v                             # (T, d) each
    scores = q @ k.T / np.sqrt(d)                                   # (T, T): row = query, column = key
    print("q, k, v:", q.shape, k.shape, v.shape, "  scores:", scores.shape)
    print(scores)
    '''),
    md(r'''
    A language model must not peek at the future: when predicting the token after "fox", it may
    use "The" and "fox" but not "saw". The **causal mask** hides every key to the right of the
    query by setting its score to $-\infty$, so that after the softmax its weight is exactly 0.
    Each row of the softmax is then a set of weights over the visible tokens that sums to 1,
    and the output of a token is the weighted average of the visible values.
    '''),
    code('''
    hidden = np.triu(np.ones((T, T), dtype=bool), k=1)             # (T, T): True = future, hidden
    masked = np.where(hidden, -np.inf, scores)
    weights = np.exp(masked - masked.max(axis=-1, keepdims=True))   # softmax, row by row
    weights /= weights.sum(axis=-1, keepdims=True)                  # (T, T), rows sum to 1
    attended = weights @ v                                          # (T, d)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    limit = np.abs(scores).max()
    panels = [(scores, "scores q·k/√d (red > 0 > blue)", dict(cmap="coolwarm", vmin=-limit, vmax=limit)),
              (~hidden, "causal mask (dark = hidden)", dict(cmap="gray")),
              (weights, "softmax weights", dict(cmap="viridis", vmin=0, vmax=1))]
    for ax, (image, title, style) in zip(axes, panels):
        ax.imshow(image, **style)
        ax.set(title=title, xticks=range(T), yticks=range(T), xticklabels=tokens, yticklabels=tokens,
               xlabel="key (looked at)", ylabel="query (looking)")
    for (i, j), w in np.ndenumerate(weights):
        axes[2].text(j, i, f"{w:.2f}", ha="center", va="center", color="white" if w < 0.5 else "black", fontsize=8)
    plt.tight_layout()
    plt.show()
    print("row sums:", weights.sum(axis=-1))
    '''),
    md(r'''
    The library does exactly this in one fused op, with a hand-written backward, on tensors
    shaped (batch, heads, T, head_dim). Same numbers:
    '''),
    code('''
    as_tensor = lambda a: Tensor(a[None, None])                     # (1, 1, T, d): batch 1, one head
    library = F.scaled_dot_product_attention(as_tensor(q), as_tensor(k), as_tensor(v), causal=True)
    print("library output:", library.shape, "  max |difference| from ours:", np.abs(library.data[0, 0] - attended).max())
    '''),
    md(r'''
    Why divide by $\sqrt{d}$? A dot product of two random vectors with unit-variance entries has
    variance $d$. Without the division, larger heads would have larger scores, the softmax would
    saturate to a one-hot choice and its gradient would vanish.
    '''),
    code('''
    for size in (8, 64, 512):
        a, b = rng.normal(size=(2, 10_000, size))
        dots = (a * b).sum(axis=1)
        print(f"d={size:3d}: std of q·k = {dots.std():6.2f}   std of q·k/√d = {(dots / np.sqrt(size)).std():.2f}")
    '''),
    md(r'''
    ## 2. A GPT block

    A GPT block does two things, each wrapped in a **residual connection** (the input is added
    back to the output, so the block only learns a *change*, and gradients flow straight
    through the addition):

    ```
    x = x + attention(layer_norm(x))    # tokens exchange information
    x = x + mlp(layer_norm(x))          # each token thinks on its own
    ```

    Attention uses several *heads*: the $C$ features are split into $H$ groups of $C/H$, and each
    group attends on its own, (B, T, C) → (B, H, T, C/H). The separate `q_proj`, `k_proj`,
    `v_proj`, `o_proj` layers matter later: LoRA adapts `q_proj` and `v_proj` only.
    '''),
    code('''
    config = GPTConfig.preset("micro")
    model = GPT(config, seed=0)
    print(config)
    print(model.blocks[0])

    x = Tensor(rng.normal(size=(2, 8, config.n_embd)).astype(np.float32))   # (B, T, C)
    print("block input", x.shape, "-> output", model.blocks[0](x).shape)
    '''),
    md(r'''
    ## 3. Where the parameters are

    Every weight is a named `Parameter`. Counting them per component, and checking against a
    formula, shows where a transformer's size comes from: per block the four attention
    projections hold $4(C^2 + C)$, the MLP $8C^2 + 5C$, the two LayerNorms $4C$ — together
    $12C^2 + 13C$.
    '''),
    code('''
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
    print(f"\\ntotal {model.num_parameters():,d}; formula V·C + T·C + L·(12C² + 13C) + 2C + V·C = {formula:,d}")

    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    ax.barh(list(counts), list(counts.values()), color="tab:blue")
    ax.set(xlabel="parameters", title=f"micro GPT: {model.num_parameters():,d} parameters")
    ax.invert_yaxis()
    plt.show()
    '''),
    md(r'''
    ## 4. Training on fables

    The corpus is generated by a small grammar (nothing is downloaded): short animal fables,
    each with a moral. The tokenizer maps each of 96 characters to an id. `fit` samples random
    windows of `block_size` characters and trains with AdamW, a warmup and a cosine schedule.

    Before training the model knows nothing, so its loss is about $\ln 96 \approx 4.56$ — a
    uniform guess over the vocabulary. Watch it fall.
    '''),
    code('''
    tokenizer = CharTokenizer()
    text = load_corpus("fables", n_chars=60_000 if FAST else 300_000)
    train_ids, val_ids = train_val_split(tokenizer.encode(text), 0.1)
    print(f"{len(train_ids):,d} training characters, {len(val_ids):,d} validation; a sample:\\n")
    print(text[:300])
    '''),
    code('''
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
    ax.set(xlabel="step", ylabel="cross-entropy loss (nats)", title="micro GPT on fables")
    ax.legend()
    plt.show()
    '''),
    md(r'''
    ## 5. Sampling

    `generate` feeds the text in, takes the probabilities for the next character, draws one,
    appends it and repeats. `temperature` below 1 sharpens the distribution (safer, more
    repetitive); above 1 flattens it. After a few hundred steps you should see words and
    spaces; after only a few dozen, mostly plausible letter frequencies.
    '''),
    code('''
    def sample(m, prompt, n=200, temperature=0.8, seed=0):
        ids = tokenizer.encode(prompt)[None]                          # (1, T)
        return tokenizer.decode(m.generate(ids, n, temperature=temperature, seed=seed)[0])


    print(sample(model, "The fox ", n=60 if FAST else 200))
    '''),
    md(r'''
    ## 6. The shipped base model

    A bigger model (the "base" preset: 4 layers, 128 features), trained for longer, is shipped
    with the package, so every LoRA experiment starts from the same frozen weights. Like a real
    pre-training corpus, its text is a mixture: 70% fables, 25% recipes from a **cookbook** and
    5% sums (`tinylora.pretrained.BASE_MIXTURE`). `load_base()` returns it with its tokenizer;
    `with_metadata=True` also tells how it was trained.
    '''),
    code('''
    base, tokenizer, meta = load_base(with_metadata=True)
    print({key: meta[key] for key in ("corpus", "preset", "steps", "final_val_loss", "parameters") if key in meta})
    for seed in range(2):
        print(f"--- sample {seed} ---")
        print(sample(base, "The ", n=80 if FAST else 300, seed=seed))
    '''),
    md(r'''
    ### Domain shift

    The base model has read many recipes, but only in a cookbook's layout. Notebook 03
    fine-tunes it on **recipe cards**: the `recipes` corpus holds the same recipes, card for
    card (one seed gives the same dishes, quantities and steps), with other labels, bullets
    and step numbers. The first recipe of each, from the same seed:
    '''),
    code('''
    for name in ("cookbook", "recipes"):
        first = load_corpus(name, n_chars=2_000, seed=1).split("\\n\\n")[0]   # the first recipe
        print(f"--- {name} ---\\n{first}\\n")
    '''),
    md(r'''
    How surprised is the base model by each kind of text? The loss on held-out text of each
    kind measures it (lower is better); the text is generated with a seed the model never saw.
    '''),
    code('''
    n_batches = 1 if FAST else 8
    held_out = {name: tokenizer.encode(load_corpus(name, n_chars=20_000, seed=1))
                for name in ("fables", "cookbook", "recipes", "arithmetic")}
    base_loss = {name: estimate_loss(base, ids, batch_size=16, max_batches=n_batches) for name, ids in held_out.items()}
    micro_loss = {name: estimate_loss(model, ids, batch_size=16, max_batches=n_batches) for name, ids in held_out.items()}
    for name in held_out:
        print(f"{name:10s}  base model {base_loss[name]:.3f}   our micro model {micro_loss[name]:.3f}")

    fig, ax = plt.subplots(figsize=(7, 3.2))
    positions = np.arange(len(held_out))
    ax.bar(positions - 0.2, list(base_loss.values()), 0.4, label="base (shipped)")
    ax.bar(positions + 0.2, list(micro_loss.values()), 0.4, label=f"micro ({STEPS} steps, above)")
    ax.set(xticks=positions, xticklabels=list(held_out), ylabel="loss (nats)", title="held-out loss on ...")
    ax.legend()
    plt.show()
    '''),
    md(r'''
    The base model is at home in fables and in the cookbook: its loss is low on both (about 0.3
    nats per character). On the **same recipes written as cards** it is several times higher
    (about 1.8). (The base model is not trained here, so fast mode gives nearly the same
    numbers.) It knows *what* the recipes say, but it has never seen *how* the cards lay
    them out: every `Title:`, `- ` bullet and `1.` is a surprise, and a surprised model also
    guesses worse at the words that follow. Sums are hard for another reason: the two numbers
    of a sum are random, so no model can predict their digits, and the answer needs real
    addition. Our micro model, which read nothing but fables, and only for a few hundred
    steps, is far behind everywhere, and worst on sums: it has never seen a digit there.

    Notebook 03 teaches the base model the card layout **without touching its weights**. The
    content is already there, so the change should be small; notebook 04 measures how small.

    ## Check yourself

    1. Scores have shape (T, T). What do row $t$ and column $s$ mean?
    2. Why is the causal mask applied *before* the softmax, with $-\infty$, and not after it with 0?
    3. Why divide the scores by $\sqrt{d}$?
    4. How many parameters does one block of the base model ($C = 128$) have?
    5. What loss does a model that knows nothing get with 96 characters, and why?
    6. `cookbook` and `recipes` hold the same recipes. Why is the base model's loss so much
       higher on `recipes`?

    <details><summary>Answers</summary>

    1. How much query token $t$ attends to key token $s$ (before the softmax).
    2. Masking after the softmax would leave rows that no longer sum to 1; $-\infty$ becomes
       exactly 0 *inside* the softmax, which renormalises over the visible tokens only.
    3. The dot product of $d$-dimensional random vectors has variance $d$; dividing keeps the
       scores near unit variance so the softmax neither saturates nor loses its gradient.
    4. $12C^2 + 13C = 12 \cdot 16384 + 13 \cdot 128 = 198{,}272$.
    5. $\ln 96 \approx 4.56$ nats: the cross-entropy of a uniform guess.
    6. A quarter of its training text was the cookbook, so it knows the dishes, quantities and
       steps. It has never seen the cards' layout (`Title:`, `Serves:`, `- ` bullets, `1.`
       numbering, `Tip:`): those characters surprise it, and it then guesses worse at the
       words after them. The content is old; only the layout is new.
    </details>
    '''),
]


# =============================================================================================
# 03  LoRA
# =============================================================================================
NB03 = [
    md(r'''
    # 03 · LoRA: plug adapters instead of rewiring the house

    The base model from notebook 02 knows recipes, but only in a cookbook's layout. We want it
    to write **recipe cards**: the same recipes under `Title:`, `Serves:`, `Ingredients:` and
    `Steps:`.

    **Full fine-tuning** is rewiring the whole house: every weight $W$ gets its own change
    $\Delta W$, the same size as $W$. You must store a complete new copy of the model per task,
    and while training, the optimizer keeps two extra numbers per weight.

    **LoRA** (Low-Rank Adaptation; Hu et al. 2021, [arXiv:2106.09685](https://arxiv.org/abs/2106.09685))
    leaves the wiring alone and buys cheap **plug adapters**. The weight $W_0$ is **frozen**, and
    the change is forced to be a product of two thin matrices, $\Delta W = B A$ with a small
    *rank* $r$. An adapter is tiny, can be unplugged (the house is untouched), and you can own
    several and swap them.

    Plan: the names and shapes; why $B$ starts at zero; the $\alpha/r$ scaling; counting
    parameters (here and for GPT-3 175B); fine-tuning the base model on recipe cards; merging for
    zero extra latency (measured); saving a tiny adapter; swapping two adapters on one base.
    '''),
    code('''
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
    from tinylora.checkpoint import save_model
    from tinylora.data import load_corpus, train_val_split
    from tinylora.lora import (LoraConfig, add_adapter, apply_lora, count_parameters, disable_adapters,
                               load_adapter, lora_layers, merge_and_unload, merge_lora, print_trainable_parameters,
                               save_adapter, set_adapter, unmerge_lora)
    from tinylora.pretrained import base_model_path, load_base
    from tinylora.train import estimate_loss, fit

    FAST = os.environ.get("TINYLORA_FAST") == "1"
    STEPS = 10 if FAST else 200          # fine-tuning steps per adapter
    BATCH = 8 if FAST else 16
    EVAL_BATCHES = 1 if FAST else 8
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook bar; we pass progress=False


    def val_loss(m, ids):
        """Mean loss on the same held-out windows every time, so models are compared on equal text."""
        return estimate_loss(m, ids, batch_size=16, max_batches=EVAL_BATCHES)
    np.set_printoptions(precision=4, suppress=True)
    print(f"tinylora {tinylora.__version__}; fast mode: {FAST}; steps per fine-tune: {STEPS}")
    '''),
    md(SETUP_NOTE),
    md(r'''
    ## 1. Names and shapes: the paper, the analogy, the code

    A `Linear` layer computes $h = W_0 x$ with $W_0$ of shape $d \times k$ (out × in). LoRA adds a
    path through a bottleneck of width $r$:

    $$h = W_0 x + \frac{\alpha}{r}\, B A x, \qquad A \in \mathbb{R}^{r \times k},\; B \in \mathbb{R}^{d \times r},\; r \ll \min(d, k).$$

    $A$ squeezes the input down to $r$ numbers, $B$ expands them back to $d$. The plug-adapter
    picture is often written $\Delta W = W_a W_b$ with $W_a$ of $d \times r$ and $W_b$ of
    $r \times d$ (a square layer, $k = d$). The names map as follows:

    | role | paper (column vectors, $h = Wx$) | analogy, $\Delta W = W_a W_b$ | tinylora attribute, shape |
    |---|---|---|---|
    | frozen weight | $W_0$, $d \times k$ | the house wiring $W$, $d \times d$ | `base_layer.weight`, (out, in) |
    | first factor to touch $x$ (down to $r$) | $A$, $r \times k$, random init | $W_b$, $r \times d$ | `lora_A`, (r, in) |
    | second factor (back up to $d$) | $B$, $d \times r$, **zero** init | $W_a$, $d \times r$ | `lora_B`, (out, r) |
    | the update | $\Delta W = BA$, $d \times k$ | $W_a W_b$, $d \times d$ | `delta_weight()` $= \frac{\alpha}{r} BA$, (out, in) |
    | scale | $\alpha / r$ | — | `LoraConfig.scaling` |

    So with the paper's column-vector convention, $W_a \leftrightarrow B$ and $W_b \leftrightarrow A$,
    shapes matching exactly. Code that multiplies **row** vectors ($h = xW$, as NumPy batches do)
    transposes everything: there the first factor is $A^\top$ ($k \times r$) and the second
    $B^\top$ ($r \times d$). Whatever the letters, the factor next to the **output** is the one
    that starts at zero. The cell below checks both conventions numerically on a real layer.
    '''),
    code('''
    base, tokenizer = load_base()
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    model = apply_lora(load_base()[0], config, adapter_name="recipes")

    layer = model.blocks[0].attn.q_proj                     # a LoRALinear around the frozen Linear
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
    '''),
    md(r'''
    ## 2. Why $B$ starts at zero (and $A$ does not)

    With $B = 0$ the update $BA$ is zero, so **a freshly plugged adapter changes nothing**: the
    model starts exactly where pre-training left it, not at some random perturbation of it.

    But both cannot be zero. The gradient of the loss with respect to $B$ is
    $\frac{\partial L}{\partial h}\,(A x)^\top$ and with respect to $A$ it is
    $B^\top \frac{\partial L}{\partial h}\,x^\top$. With $A$ random, $B$'s first gradient is
    non-zero and $B$ moves; once it has moved, $A$'s gradient is non-zero too. Were both zero,
    both gradients would be zero forever. The numbers:
    '''),
    code('''
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
    '''),
    md(r'''
    ## 3. The scaling $\alpha / r$

    The update is multiplied by $\alpha / r$. With $A$'s entries drawn at a fixed scale, $BAx$
    sums over $r$ terms, so its size grows with $r$; dividing by $r$ keeps the update's size
    roughly independent of the rank. That lets you try $r = 4$ or $r = 16$ with the **same
    learning rate**: you tune $\alpha$ once (a common choice is $\alpha = 2r$ at the rank you
    start from) and leave it fixed when you change $r$.
    '''),
    code('''
    for r in (1, 2, 4, 8, 16, 32):
        print(f"r = {r:2d}, alpha = 16  ->  scaling alpha/r = {LoraConfig(r=r, lora_alpha=16).scaling:6.3f}")
    '''),
    md(r'''
    ## 4. Counting parameters

    Each adapted layer adds $r(k + d)$ parameters instead of $dk$. `print_trainable_parameters`
    prints the line PEFT users know. For this model: 4 layers × 2 projections ($W_q$, $W_v$) ×
    $r (128 + 128)$.
    '''),
    code('''
    print_trainable_parameters(model)
    n = base.config.n_layer * 2 * config.r * (2 * base.config.n_embd)
    print(f"by hand: {base.config.n_layer} layers x 2 matrices x {config.r} x (128 + 128) = {n:,d}")
    print(f"full fine-tuning would train all {base.num_parameters():,d}: {base.num_parameters() / n:.0f}x more")
    '''),
    md(r'''
    The saving grows with the model. GPT-3 175B has $d_{model} = 12288$ and 96 layers; each layer
    holds about $12\,d_{model}^2$ weights (attention $4d^2$, MLP $8d^2$). The LoRA paper adapts
    $W_q$ and $W_v$ with $r = 4$ in its GPT-3 experiments and reports a **roughly 10,000×**
    reduction in trainable parameters (and checkpoints of 35 MB instead of 350 GB). Its
    smallest GPT-3 configuration, with 4.7 M trainable parameters, corresponds to $r = 1$.
    '''),
    code('''
    d_model, n_layers = 12288, 96
    gpt3 = n_layers * 12 * d_model**2 + 50257 * d_model          # blocks + token embedding (BPE vocab)
    print(f"GPT-3 weights: {gpt3 / 1e9:.1f} B (the paper's 175B)")
    for r in (4, 1):
        lora = n_layers * 2 * r * (d_model + d_model)            # W_q and W_v, each r·(d + d)
        print(f"r = {r}: LoRA on W_q, W_v trains {lora / 1e6:5.1f} M = {175e9 / lora:,.0f}x fewer than 175 B; "
              f"{2 * lora / 2**20:.0f} MiB in fp16")
    '''),
    md(r'''
    ## 5. Fine-tuning on recipe cards

    `apply_lora` has frozen every base weight; `fit` trains only what has `requires_grad`, i.e.
    the adapters. For comparison we also run full fine-tuning (every weight trains) on the same
    data for the same number of steps. LoRA gets a higher learning rate (1e-2 against 1e-3), as
    is usual: its few parameters start from zero and must travel further.
    '''),
    code('''
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
    print(f"LoRA gets {(before - lora_after) / (before - full_after):.0%} of full fine-tuning's improvement on the cards")
    print(f"seconds: LoRA {lora_history['seconds']:.1f}, full {full_history['seconds']:.1f}")

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.axhline(recipe_before, color="grey", ls=":", label="base model")
    for label, h in (("LoRA", lora_history), ("full fine-tuning", full_history)):
        ax.plot(h["val_step"], h["val_loss"], "o-", label=label)
    ax.set(xlabel="step", ylabel="validation loss on recipe cards", title="fine-tuning the base model on recipe cards")
    ax.legend()
    plt.show()
    del full
    '''),
    md(r'''
    What to look for (rounded numbers from a full run; fast mode trains only a few steps):

    * **Recipe cards.** Fine-tuning lowers the loss on the cards from about 1.8 (base) to about
      0.34 with LoRA and about 0.24 with full fine-tuning. So LoRA gets about 93% of full
      fine-tuning's improvement, with 2% of the trainable weights. That is the base model's
      knowledge paying off: the recipes are already in its weights, and writing them in a new
      layout is a small change. Notebook 04 measures how small, and what happens when the
      target needs knowledge the base does not have.
    * **Fables.** Both fine-tuned models get worse at fables (base about 0.34): the update
      changes the function on *every* input, not only on recipe cards. But LoRA forgets less
      (about 0.68 against 0.96) — its low-rank update cannot move the model as far — and it
      can unplug its adapter to be the base model again, exactly (section 8). Full fine-tuning
      has overwritten the base.

    Now ask both models for a recipe card. The base model has never seen `Title:`, so it
    wanders off, often into a fable; the adapter has learned the layout. (Samples from a
    model this small are rough, and in fast mode the adapter has barely trained.)
    '''),
    code('''
    prompt = tokenizer.encode("Title: Lemon")[None]                       # (1, 12)
    for name, m in (("base model", base), ("LoRA r=8", model)):
        print(f"--- {name}, prompt 'Title: Lemon' ---")
        print(tokenizer.decode(m.generate(prompt, 80 if FAST else 300, temperature=0.5, seed=0)[0]))
    '''),
    md(r'''
    ## 6. Merging: zero extra latency

    During training the adapter is a side path: each adapted layer does its big matmul with
    $W_0$ **plus** two thin ones, $A$ then $B$. For serving, fold the adapter in:
    $W \leftarrow W_0 + \frac{\alpha}{r}BA$. The merged model has exactly the shapes of the base
    model, so it runs at exactly the base model's speed; `unmerge_lora` subtracts it out again.

    Below: the median time of a no-grad forward pass (batch 8, 64 tokens) for the base model,
    the LoRA model unmerged, and a merged copy. They are timed in interleaved rounds, so that
    background load hits all three alike, and with NumPy's matrix library held to one thread
    (if `threadpoolctl` is installed), which makes timings far steadier on a shared machine.
    '''),
    code('''
    merged = merge_lora(copy.deepcopy(model))
    x_time = np.stack([recipe_val[i * 64:(i + 1) * 64] for i in range(8)])   # (8, 64)
    with no_grad():
        diff = np.abs(merged(x_time)[0].data - model(x_time)[0].data).max()
    print(f"merged vs unmerged: max |logit difference| = {diff:.2e}")

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                                                         # timings just get noisier
        threadpool_limits = lambda limits: contextlib.nullcontext()

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
    '''),
    md(r'''
    Merged and base should agree within timing noise; the unmerged model pays for its side path.
    Here that cost is only a few percent, because $r = 8$ is small next to 128 and only 8 of the
    model's 25 linear layers carry an adapter; in a large model served one request at a time,
    the extra small matmuls per layer weigh more. `merge_and_unload` goes one step further and
    puts plain `Linear` layers back, so the result is an ordinary GPT with no LoRA code in it.
    '''),
    code('''
    before = type(merged.blocks[0].attn.q_proj).__name__
    unloaded = merge_and_unload(merged)                     # a plain GPT again, adapter folded in
    with no_grad():
        diff = np.abs(unloaded(x_time)[0].data - model(x_time)[0].data).max()
    print(f"merge_and_unload: q_proj {before} -> {type(unloaded.blocks[0].attn.q_proj).__name__}; "
          f"max |logit difference| from the LoRA model = {diff:.2e}")
    W0 = base.blocks[0].attn.q_proj.weight.data
    restored = unmerge_lora(merge_lora(model)).blocks[0].attn.q_proj.base_layer.weight.data
    print("merge then unmerge: max |W - W0| =", np.abs(restored - W0).max())
    '''),
    md(r'''
    ## 7. Saving a tiny adapter

    Only the adapter needs saving: `save_adapter` writes `adapter_config.json` (the rank,
    targets, and the shape of every adapted layer) and `adapter_model.safetensors` (the $A$
    and $B$ matrices). Compare with a full checkpoint of the model.
    '''),
    code('''
    workdir = tempfile.mkdtemp(prefix="tinylora-03-")
    adapter_dir = os.path.join(workdir, "recipes-adapter")
    save_adapter(model, adapter_dir, adapter_name="recipes")
    adapter_bytes = {name: os.path.getsize(os.path.join(adapter_dir, name)) for name in sorted(os.listdir(adapter_dir))}
    full_path = os.path.join(workdir, "full_model.npz")
    save_model(base, full_path)
    full_bytes = os.path.getsize(full_path)
    for name, size in adapter_bytes.items():
        print(f"{name:28s} {size:10,d} bytes")
    print(f"{'full checkpoint (.npz)':28s} {full_bytes:10,d} bytes  (shipped base: {os.path.getsize(base_model_path()):,d})")
    print(f"the adapter is {full_bytes / sum(adapter_bytes.values()):.0f}x smaller")

    reloaded = load_adapter(load_base()[0], adapter_dir, adapter_name="recipes")
    with no_grad():
        same = np.abs(reloaded(x_time)[0].data - model(x_time)[0].data).max()
    print("reloaded adapter on a fresh base model: max |logit difference| =", same)
    '''),
    md(r'''
    ## 8. Two adapters, one base

    One frozen base, many plugs: add an `arithmetic` adapter next to `recipes`, train it
    (`set_adapter` makes it the active and only trainable one), then swap between them.
    `disable_adapters()` unplugs everything for a block of code, giving the base model back.
    '''),
    code('''
    arithmetic_text = load_corpus("arithmetic", n_chars=40_000 if FAST else 100_000)
    arith_train, arith_val = train_val_split(tokenizer.encode(arithmetic_text), 0.1)
    add_adapter(model, "arithmetic", LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], seed=1))
    set_adapter(model, "arithmetic")
    print_trainable_parameters(model)
    arith_history = fit(model, arith_train, arith_val, steps=STEPS, batch_size=BATCH, lr=1e-2,
                        warmup_steps=STEPS // 10, progress=False)
    print(f"arithmetic adapter trained in {arith_history['seconds']:.1f} s")
    '''),
    code('''
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
    '''),
    md(r'''
    Each row is one plug in the same socket: the base weights never changed. (In fast mode the
    adapters train for only a few steps, so the differences are smaller; run the full notebook
    to see them clearly.)

    ## Check yourself

    1. An adapted layer has $W_0$ of shape (out, in) = (128, 128) and $r = 8$. How many parameters does its adapter add?
    2. Why is $B$ initialised to zero? What would go wrong if $A$ were zero as well?
    3. If you double $r$ and keep $\alpha$ fixed, what happens to the scaling, and why is that useful?
    4. Why does a merged LoRA model run exactly as fast as the base model?
    5. Why can two adapters share one base model, but two *merged* models cannot?
    6. In the plug-adapter notation $\Delta W = W_a W_b$ ($W_a$: $d \times r$), which paper matrix is $W_a$?

    <details><summary>Answers</summary>

    1. $r(\text{in} + \text{out}) = 8 \cdot 256 = 2{,}048$, against $16{,}384$ in $W_0$.
    2. So that the fresh adapter leaves the model's output unchanged. If $A$ were zero too,
       both gradients ($\propto Ax$ for $B$, $\propto B^\top$ for $A$) would be zero and
       training could never start.
    3. $\alpha/r$ halves, which roughly cancels the larger sum over $r$ terms in $BAx$: the
       update keeps its size, so the learning rate need not be retuned.
    4. Merging stores $W_0 + \frac{\alpha}{r}BA$ in the base weight; the layer is a plain
       matmul of the same shape as before, with no side path.
    5. Merging overwrites the shared weight; unmerged adapters leave it untouched and only
       the small $A, B$ are swapped.
    6. $B$ ($d \times r$, the zero-initialised factor next to the output) in the paper's
       column-vector convention; with row vectors it is $A^\top$'s place that $W_a$ takes.
    </details>
    '''),
]


# =============================================================================================
# 04  The rank sweep: the intrinsic-rank hypothesis
# =============================================================================================
NB04 = [
    md(r'''
    # 04 · The rank sweep: how much rank does an update need?

    Notebook 03 picked $r = 8$ without asking why. LoRA bets that the change fine-tuning makes
    to a weight matrix needs only a few directions, so a thin $\Delta W = BA$ can hold it.
    This notebook puts that bet to the test with the library's own experiment runner,
    `tinylora/experiments/`: train adapters of rank 1 to 32, train every weight for comparison,
    and look at what each rank buys.

    Plan: the hypothesis and the three tasks that test it; running the sweep (and resuming it);
    a planted low-rank update and its knee; a real domain shift against full fine-tuning; the
    spectrum of a full fine-tuning update; whether adapters of different rank learn the same
    directions; $\alpha/r$ against rsLoRA's $\alpha/\sqrt{r}$; what each rank costs.

    Every number and figure below is computed from the sweep's `results.jsonl` by
    `tinylora.experiments.analysis` and `tinylora.experiments.plots`; the same code draws the
    figures of [`docs/results.md`](../docs/results.md).
    '''),
    code('''
    import os
    import tempfile
    import time

    import numpy as np
    from IPython.display import Image, Markdown, display

    import tinylora
    from tinylora.experiments import analysis, plots
    from tinylora.experiments.plots import KNEE_FACTOR
    from tinylora.experiments.sweep import SweepConfig, run_sweep
    from tinylora.experiments.tasks import planted_update

    FAST = os.environ.get("TINYLORA_FAST") == "1"
    CONFIG = SweepConfig.quick() if FAST else SweepConfig()     # quick: ranks 1, 4, 8 and 25 steps
    # Fast mode starts fresh; the full sweep goes to a fixed folder, so running the notebook again resumes it.
    OUT = tempfile.mkdtemp(prefix="tinylora-04-") if FAST else os.path.join(tempfile.gettempdir(), "tinylora-04-sweep")
    np.set_printoptions(precision=3, suppress=True)
    print(f"tinylora {tinylora.__version__}; fast mode: {FAST}; sweep folder: {OUT}")


    def show_png(fig, name, width=None):
        """Save a figure drawn by tinylora.experiments.plots into the sweep's figures/ folder and show it."""
        path = os.path.join(OUT, plots.FIGURES_DIR, f"{name}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fig.savefig(path, dpi=150)
        display(Image(filename=path, width=width))
    '''),
    md(SETUP_NOTE),
    md(r'''
    ## 1. The hypothesis, and how to test it

    Aghajanyan, Zettlemoyer and Gupta (2020, [arXiv:2012.13255](https://arxiv.org/abs/2012.13255))
    fine-tuned large language models while letting the parameters move only inside a *random*
    low-dimensional subspace, and found that a few hundred to a few thousand free numbers reach
    90 % of full fine-tuning: a pre-trained model is a few directions away from many tasks, its
    **intrinsic dimension** is small. Hu et al. (2021, [arXiv:2106.09685](https://arxiv.org/abs/2106.09685))
    carried the idea to each weight matrix: the update $\Delta W = W_{\text{ft}} - W_0$ should
    have a low **intrinsic rank**, so LoRA constrains it to rank $r$ from the start. "Low" only
    means something against a reference: every real matrix is full rank in exact arithmetic,
    so the question is whether $\Delta W$'s singular values fall off much faster than those of a
    random matrix of the same size and norm. ([`docs/intrinsic_rank.md`](../docs/intrinsic_rank.md)
    tells the story at length.)

    `tinylora sweep` tests it three ways, always starting from the shipped base model of
    notebook 02:

    | task | what is trained | what it tests |
    |---|---|---|
    | `planted` | a student (base + LoRA on `blocks.3.attn.v_proj`) learns to copy a teacher whose weight carries a hidden rank-$k^*$ update $\Delta W^*$ ($k^* = 4$) | a controlled experiment: is rank the adapter's capacity, and does training find the planted directions? The error should have a **knee** at $r = k^*$. |
    | `domain` | LoRA on `q_proj`, `v_proj` of every block, and full fine-tuning of every weight, on the recipe cards (the base model read the same kind of recipes in a cookbook's layout) | a real shift, of layout rather than knowledge: how much of full fine-tuning's improvement does each rank recover, and is the full update itself low rank? |
    | `scaling` | the domain task with $\alpha/r$ and with rsLoRA's $\alpha/\sqrt{r}$ | does the rank change the update's scale, and so the effective learning rate? |

    The planted task can only show that LoRA finds a low-rank update *when one exists*; the
    domain task is where we learn whether a real update is low rank.
    '''),
    md(r'''
    ## 2. Running the sweep

    A sweep is a `SweepConfig`: tasks × ranks × seeds, plus one full fine-tuning run per task.
    `config.runs()` expands it into the list of runs, each with a stable id (a hash of
    everything that determines its numbers). From a terminal the same sweeps are

    ```bash
    tinylora sweep --quick --out DIR      # fast mode: ranks 1, 4, 8, 25 steps (about 25 s)
    tinylora sweep --out DIR              # the default: ranks 1, 2, 4, 8, 16, 32 (about 2 minutes)
    tinylora report DIR                   # the Markdown tables below
    tinylora plot DIR                     # DIR/figures/*.png and *.svg
    ```

    `run_sweep` appends each finished run to `DIR/results.jsonl` and skips runs already there,
    so an interrupted sweep **resumes** where it stopped: run the cell below a second time (or
    the same command again) and nothing is retrained.
    '''),
    code('''
    print("config:", CONFIG.to_dict())
    for spec in CONFIG.runs():
        print("  ", spec.run_id)

    start = time.perf_counter()
    results = run_sweep(CONFIG, OUT, progress=False)
    print(f"{len(results)} runs finished in {time.perf_counter() - start:.1f} s")
    '''),
    code('''
    results = run_sweep(CONFIG, OUT, progress=False)    # the same sweep again: everything is already done
    rows = plots.summarize(results)                     # one row per (task, method, rank, ...), seeds pooled
    display(Markdown(plots.report_markdown(OUT)))
    '''),
    md(r'''
    Each line of `results.jsonl` holds the run's metrics, its parameter counts and file sizes,
    and the raw material for the analyses below (the singular values of a full fine-tuning
    $\Delta W$, the $A$ matrices of the last block's adapters). `plots.plot_all` draws every
    figure whose data is present; `budget` and `scaling` are skipped here because this sweep did
    not run those tasks.
    '''),
    code('''
    written = plots.plot_all(OUT, formats=("png",), log=print)
    FIGURES = os.path.join(OUT, plots.FIGURES_DIR)
    print("wrote", sorted(os.path.basename(p) for p in written))
    '''),
    md(r'''
    ## 3. The planted rank: a knee at $k^*$

    Why plant an update? Because then we know the right answer. The teacher's
    `blocks.3.attn.v_proj` carries an extra $\Delta W^*$ of rank exactly $k^* = 4$, and the
    student must reproduce the teacher's logits. By the Eckart–Young theorem the best rank-$r$
    approximation of $\Delta W^*$ keeps its top $r$ singular values, so a rank-$r$ adapter can
    match it exactly once $r \ge k^*$ and not before: the error should fall steeply up to
    $r = k^*$ and then flatten at the floor that full fine-tuning of the same layer reaches.

    The *relative error* is the student's output error divided by the untrained student's
    (1 = no better than the base model). The orange line is the error in the weights,
    $\lVert \Delta W - \Delta W^* \rVert_F / \lVert \Delta W^* \rVert_F$.
    '''),
    code('''
    Image(filename=os.path.join(FIGURES, "planted_knee.png"))
    '''),
    md(r'''
    `analysis.knee_rank` names the knee: the smallest rank whose error is within a factor of
    the floor; the report uses the same factor, `KNEE_FACTOR` (5). **What to look for:** in the full
    sweep the knee should sit at $k^* = 4$; the short fast-mode run is noisier. The last column
    is the ideal: the weight error of the best possible rank-$r$ approximation of a rank-4
    update with equal singular values, $\sqrt{\sum_{i > r} s_i^2 / \sum_i s_i^2}$, computed from
    `planted_update` itself.
    '''),
    code('''
    planted_runs = [r for r in results if r["task"] == "planted"]
    k_star = planted_runs[0]["planted"]["k_star"]
    planted_lora = [r for r in rows if r["task"] == "planted" and r["method"] == "lora"]
    floor = next(r for r in rows if r["task"] == "planted" and r["method"] == "full")["mean"]
    weight_error = {r["rank"]: r["metrics"]["weight_error"] for r in planted_runs if r["method"] == "lora"}
    ideal = analysis.cumulative_energy(analysis.singular_spectrum(planted_update((128, 128), k_star, 1.0, seed=0)))

    print(f"full fine-tuning floor: relative error {floor:.4f}; {KNEE_FACTOR:g} x floor = {KNEE_FACTOR * floor:.4f}")
    print(f"{'rank':>4}  {'rel_error':>9}  {'within?':>10}  {'weight error':>12}  {'ideal weight error':>18}")
    for row in planted_lora:
        r = row["rank"]
        best = np.sqrt(max(0.0, 1.0 - ideal[r - 1]))
        print(f"{r:4d}  {row['mean']:9.4f}  {str(row['mean'] <= KNEE_FACTOR * floor):>10}  {weight_error[r]:12.3f}  {best:18.3f}")

    knee = analysis.knee_rank([r["rank"] for r in planted_lora], [r["mean"] for r in planted_lora], floor=floor,
                              factor=KNEE_FACTOR)
    print(f"knee (smallest rank within {KNEE_FACTOR:g}x full fine-tuning's error): r = {knee};  planted rank k* = {k_star}")
    '''),
    md(r'''
    Two things to notice. The output error can reach the floor while the weight error stays
    well above the ideal: the loss only constrains $\Delta W$ along the input directions the
    layer actually receives, and nothing pulls the rest of the adapter towards $\Delta W^*$.
    And ranks above $k^*$ add little next to the drop before it: the extra capacity has
    almost nothing left to express. (Try
    `tinylora sweep --task planted --k-star 2`: the knee should move with $k^*$.)

    This shows that rank acts as capacity and that training finds the planted directions. It
    does **not** show that real fine-tuning updates are low rank — for that we need a real task.

    ## 4. A real domain shift: LoRA against full fine-tuning

    The base model read recipes in a cookbook's layout; now it is fine-tuned on recipe cards,
    the same kind of recipes in a layout it has never seen (notebook 02). Three reference
    points: the frozen base model (dotted), full fine-tuning of every weight (dashed), and LoRA
    on `q_proj` and `v_proj` at each rank. `analysis.recovered_fraction` turns a LoRA loss
    into the share of full fine-tuning's improvement it achieves:
    $(\text{base} - \text{LoRA}) / (\text{base} - \text{full})$.
    '''),
    code('''
    Image(filename=os.path.join(FIGURES, "domain_metric_vs_rank.png"))
    '''),
    code('''
    domain_runs = [r for r in results if r["task"] == "domain"]
    base_loss = float(np.mean([r["metrics"]["base_val_loss"] for r in domain_runs]))
    domain_full = next(r for r in rows if r["task"] == "domain" and r["method"] == "full")
    domain_lora = [r for r in rows if r["task"] == "domain" and r["method"] == "lora"]

    print(f"{'':18s} {'held-out loss':>13}  {'recovered':>9}  {'trainable':>9}")
    print(f"{'frozen base':18s} {base_loss:13.4f}  {0:9.0%}  {'–':>9}")
    for row in domain_lora:
        fraction = analysis.recovered_fraction(base_loss, row["mean"], domain_full["mean"])
        print(f"{'LoRA r=' + str(row['rank']):18s} {row['mean']:13.4f}  {fraction:9.0%}  {row['trainable_pct'] / 100:9.2%}")
    print(f"{'full fine-tuning':18s} {domain_full['mean']:13.4f}  {1:9.0%}  {domain_full['trainable_pct'] / 100:9.2%}")
    '''),
    md(r'''
    **What to look for.** In the full sweep (100 steps per run) a single direction per matrix,
    $r = 1$, already gets about 80% of full fine-tuning's improvement. $r = 4$ gets about 90%
    with under 1% of the weights trainable, and then the curve flattens: from $r = 8$ to
    $r = 32$ it gains only a couple of points more, while each doubling doubles the adapter.
    That is the intrinsic-rank hypothesis at work: the change the cards ask for fits in a few
    directions of `q` and `v`. (Fast mode trains 25 steps, so its fractions are rougher.)

    Why so few? The base model already knows *what* recipes say; the cards only ask it to say
    it in another layout, and re-routing what the model already computes is just what a small
    change to the attention projections can do. The claim depends on that. An earlier base
    model of this project had read recipes only as 5% of its text; on the same task LoRA on
    `q` and `v` got about a tenth of full fine-tuning's improvement at $r = 1$ and about half
    even at $r = 32$. That target asked for new knowledge — words, quantities, the details of
    each dish — and full fine-tuning could store it in the embeddings, the MLPs and the output
    layer, which this adapter leaves frozen. A low intrinsic rank is a property of a task
    *relative to a base model that is already close to it*.

    An experiment to try: do the last few points sit outside `q` and `v`? Adapt every linear
    layer instead, at a few ranks, and compare the recovered fractions.

    ```bash
    tinylora sweep --task domain --targets all-linear --ranks 1,4,16 --out runs/all-linear
    ```

    ## 5. Is full fine-tuning's update low rank?

    Full fine-tuning puts no constraint on $\Delta W$, so its spectrum is the direct test of the
    hypothesis. For each attention projection the sweep stored the singular values of
    $\Delta W = W_{\text{ft}} - W_0$ and of a Gaussian matrix of the same shape and norm (dashed):
    no low-rank structure, the same energy.
    '''),
    code('''
    Image(filename=os.path.join(FIGURES, "delta_spectrum.png"), width=950)
    '''),
    code('''
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
    '''),
    md(r'''
    Read each row against its random twin. In the full sweep the update's energy is far more
    concentrated than the random matrix's: its top 8 directions of 128 hold about half to
    two thirds of it (the random matrix's, about a fifth), 90% of it sits in about 25-30
    directions (random: about 66), and its effective rank is about 62-68 (random: about 103).
    Fine-tuning clearly prefers a few directions.

    Yet the update is not *only* a few directions: its top 4 hold less than half of its
    energy, while a rank-4 adapter got about 90% of the improvement in section 4. Both can be
    true, because energy is not usefulness. Full fine-tuning is free to move every weight in
    every direction, and nothing keeps its update small; the sweep shows that a few
    directions are enough for most of the gain. So a full update's spectrum gives an upper
    bound on the rank a task needs, and the rank sweep of section 4 is the sharper test. (The
    paper's claim is about models thousands of times larger, whose updates are reported to
    be far more concentrated.)

    ## 6. Do adapters of different rank learn the same directions?

    Hu et al. (Section 7.2) compare the $A$ matrices of a rank-8 and a rank-64 adapter of the
    same layer: $\varphi(i, j) = \lVert U_i^\top V_j \rVert_F^2 / \min(i, j)$, where $U_i$ holds
    the top-$i$ right-singular vectors of the first and $V_j$ the top-$j$ of the second.
    $\varphi = 1$ when one subspace contains the other, 0 when they are orthogonal. Random
    subspaces of $\mathbb{R}^d$ already give $\max(i, j)/d$ on average, and that is the
    baseline to beat. We compare rank 8 (or the smallest rank $\ge 4$ below the largest) with
    the largest rank, by handing the figure function just those two runs.
    '''),
    code('''
    by_rank = {r["rank"]: r for r in domain_runs if r["method"] == "lora"}
    large = max(by_rank)
    small = 8 if 8 in by_rank and 8 < large else min((r for r in by_rank if 4 <= r < large), default=min(by_rank))
    show_png(plots.figure_subspace_similarity([by_rank[small], by_rank[large]]), "subspace_similarity_pair", width=950)

    for layer, A_small in by_rank[small]["analysis"]["adapter_A"].items():
        A_small = np.asarray(A_small)                                          # (r_small, in)
        A_large = np.asarray(by_rank[large]["analysis"]["adapter_A"][layer])   # (r_large, in)
        grid = analysis.subspace_similarity_grid(A_small, A_large)             # (r_small, r_large)
        d = A_small.shape[1]
        print(f"{layer}:  φ(1, 1) = {grid[0, 0]:.2f} (random {analysis.random_subspace_similarity(d, 1, 1):.3f})"
              f"   φ(1, {large}) = {grid[0, -1]:.2f}   φ({small}, {large}) = {grid[-1, -1]:.2f}"
              f" (random, both: {analysis.random_subspace_similarity(d, small, large):.2f})")
    '''),
    md(r'''
    Compare each number with its random baseline, not with 1. **What to look for:** in the
    paper (GPT-3, rank 8 against 64) the single top direction is shared, a bright first column.
    In the full sweep here (rank 8 against 32) it is shared too, far above chance:
    $\varphi(1, 1)$ is about 0.2 for `q_proj` and about 0.6 for `v_proj`, where random
    directions give 0.008, and the rank-8 adapter's whole subspace sits inside the rank-32
    one's at about twice the baseline. Two adapters trained separately, from different random
    starts, find overlapping directions. That is the paper's argument that a larger $r$ mostly
    adds directions the smaller one could do without, and it fits the flat curve of section 4.
    (Fast mode compares ranks 4 and 8 after 25 steps, so its numbers are rougher.) With more
    steps or another rank pair the numbers move; with several seeds, `--seeds 0,1,2`, you can
    see how much.

    ## 7. $\alpha/r$ or $\alpha/\sqrt{r}$?

    LoRA scales the update by $\alpha/r$. With $\alpha$ fixed, doubling $r$ halves the scale,
    which keeps the size of $BAx$ roughly constant *at initialisation* — but it also shrinks
    every step that training takes in $\Delta W$, so at a fixed learning rate a large-rank
    adapter learns as if its learning rate were smaller. rsLoRA (Kalajdzievski 2023,
    [arXiv:2312.03732](https://arxiv.org/abs/2312.03732)) derives $\alpha/\sqrt{r}$ as the
    scale that keeps learning stable as $r$ grows, so a learning rate tuned at one rank still
    works at another. The `scaling` task trains the domain task at each rank under both rules,
    with the same learning rate. It needs six more runs, so it runs only in full mode.
    '''),
    code('''
    if FAST:
        print("Skipped in fast mode (six more runs, about a minute). To see it, run the notebook without\\n"
              "TINYLORA_FAST=1, or from a terminal:\\n"
              "    tinylora sweep --task scaling --ranks 1,4,16 --out runs/scaling")
    else:
        scaling_out = OUT + "-scaling"
        scaling_results = run_sweep(SweepConfig(tasks=("scaling",), ranks=(1, 4, 16)), scaling_out, progress=False)
        show_png(plots.figure_scaling(scaling_results), "scaling")
        for row in plots.summarize(scaling_results):
            rule = "α/√r (rsLoRA)" if row["rslora"] else "α/r   (LoRA)  "
            print(f"{rule}  r={row['rank']:2d}  held-out loss {row['mean']:.4f}")
    '''),
    md(r'''
    **What to look for.** At $r = 1$ the two rules give the same scale, so the two curves start
    at the same point. At $r = 16$, $\alpha/\sqrt{r}$ makes every step in $\Delta W$ four times
    larger than $\alpha/r$ does — the same as a learning rate four times larger. The sweep's
    learning rate for this task (`2e-2`) was tuned for $\alpha/r$, so the question the figure
    answers is whether that larger step helps (the large ranks finally use their capacity) or
    overshoots (the loss gets worse as $r$ grows, possibly above the frozen base). Neither rule
    is free of tuning: to compare them fairly, also try rsLoRA at a smaller learning rate,
    `tinylora sweep --task domain --rslora --lr 1e-2 --ranks 1,4,16 --out runs/rslora`.

    ## 8. What each rank costs

    An adapter on an (out × in) layer trains $r\,(\text{in} + \text{out})$ numbers: linear in
    $r$, and tiny next to the $\text{in} \cdot \text{out}$ of the layer itself. What must be
    saved per task shrinks the same way.
    '''),
    code('''
    Image(filename=os.path.join(FIGURES, "parameters_vs_rank.png"), width=950)
    '''),
    code('''
    print(f"{'':16s} {'trainable':>10} {'file bytes':>11} {'vs full checkpoint':>19}")
    for r in sorted((r for r in domain_runs if r["method"] == "lora"), key=lambda r: r["rank"]):
        ratio = r["full_checkpoint_bytes"] / r["adapter_bytes"]
        print(f"LoRA r={r['rank']:<9d} {r['trainable_params']:10,d} {r['adapter_bytes']:11,d} {ratio:16.0f}x smaller")
    print(f"{'full checkpoint':16s} {full_run['trainable_params']:10,d} {full_run['full_checkpoint_bytes']:11,d}")
    '''),
    md(r'''
    Put this next to section 4: each doubling of $r$ doubles the cost, so the useful rank is the
    one after which the loss curve stops paying for the doubling (on the recipe cards, in the
    full sweep, about 4 to 8). On a model with billions of parameters the same arithmetic turns
    a checkpoint of many gigabytes into an adapter of a few megabytes.

    ## Check yourself

    1. Why must the planted task's error have a knee at $r = k^*$? Why does that knee not show
       that real fine-tuning updates are low rank?
    2. A LoRA adapter of rank 8 on `q_proj` and `v_proj` (each 128 × 128) in all 4 blocks: how
       many trainable parameters?
    3. Why is $\Delta W$'s spectrum compared with a random matrix of the same shape and norm,
       rather than judged on its own?
    4. On the recipe cards a rank-4 adapter on `q`, `v` gets about 90% of full fine-tuning's
       improvement. Why? And why did the same adapter fall far short with a base model that had
       read few recipes? Name two things full fine-tuning can change that the adapter cannot.
    5. Two adapters on a layer with $d = 128$ inputs, of rank 8 and 32, give $\varphi(8, 32) = 0.3$.
       Is that evidence of a shared subspace?
    6. With $\alpha = 16$ fixed, what is the scale of the update at $r = 1$ and $r = 16$ under
       $\alpha/r$, and under $\alpha/\sqrt{r}$?
    7. You re-run `tinylora sweep --out DIR` after it was interrupted at run 9 of 14. What happens?

    <details><summary>Answers</summary>

    1. A rank-$r$ $\Delta W$ can equal the rank-$k^*$ $\Delta W^*$ only if $r \ge k^*$ (by
       Eckart–Young the best rank-$r$ approximation leaves the energy of $k^* - r$ directions
       out). The update was planted low rank by construction; it says nothing about what
       fine-tuning on real data produces.
    2. $8 \text{ layers} \times 8 \times (128 + 128) = 16{,}384$, about 2 % of the model.
    3. "The singular values decay" is true of every matrix, random ones included
       (Marchenko–Pastur). Only a decay much faster than a structure-free matrix of the same
       size and energy shows a low intrinsic rank.
    4. The base model already knows what the recipes say (it read them in the cookbook); the
       cards only change the layout, and re-routing known content is a small change to the
       attention projections. A base that had read few recipes needs new knowledge: words,
       quantities, dishes. A character model keeps that in its embeddings, its MLPs and its
       output layer (and full fine-tuning also changes the layer norms), which LoRA on `q`, `v`
       leaves frozen. Adapting every linear layer (`--targets all-linear`) tests how much of a
       gap comes from where the adapter sits.
    5. Barely: random subspaces give $\max(8, 32)/128 = 0.25$ on average. Only values well
       above 0.25 indicate shared directions.
    6. $\alpha/r$: 16 and 1. $\alpha/\sqrt{r}$: 16 and 4.
    7. It reads `DIR/results.jsonl`, skips the 8 finished runs (their ids match) and runs the
       remaining 6; a run cut short leaves no line, so it is simply run again.
    </details>
    '''),
]


# =============================================================================================
# 05  The GPU
# =============================================================================================
NB05 = [
    md(r'''
    # 05 · The same code on a GPU (CuPy)

    CuPy is a copy of the NumPy API whose arrays live in GPU memory. tinylora never calls
    `numpy` directly inside an op: it asks `get_array_module(array)` for the module that owns
    the array — `numpy` or `cupy` — and calls that module, conventionally named `xp`. So the
    same engine, GPT and LoRA code runs on either device, and moving a model is one call:
    `model.to("cuda")`.

    This notebook runs everywhere. **Without a GPU it says so and stays on the CPU**; the
    comparison at the end then shows the CPU only.
    '''),
    code('''
    import inspect
    import os
    import time

    import matplotlib.pyplot as plt
    import numpy as np

    import tinylora
    from tinylora import Tensor, get_array_module, is_cuda_available, to_device
    from tinylora.data import CharTokenizer, get_batch, load_corpus
    from tinylora.gpt import GPT, GPTConfig
    from tinylora.optim import AdamW

    FAST = os.environ.get("TINYLORA_FAST") == "1"
    GPU = is_cuda_available()
    if GPU:
        import cupy
        gpu_name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        gpu_name = gpu_name.decode() if isinstance(gpu_name, bytes) else gpu_name
        print(f"GPU found: {gpu_name}; CuPy {cupy.__version__}")
    else:
        print("NO GPU: CuPy is not installed or sees no CUDA device.\\n"
              "Everything below runs on the CPU with NumPy; the GPU timings are skipped.\\n"
              'On a machine with an NVIDIA GPU: pip install "tinylora[gpu]"')
    print(f"fast mode: {FAST}")
    '''),
    md(SETUP_NOTE),
    md(r'''
    ## 1. Dispatch: which module owns this array?

    `get_array_module` looks at the *type* of its arguments. A NumPy array gives `numpy`; a
    CuPy array gives `cupy`. Code written against `xp` then runs on either.
    '''),
    code('''
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
            print("to_device(host, 'cuda') without a GPU raises:\\n ", err)
    '''),
    md(r'''
    Every op in the engine follows this pattern. Here are two, printed from the package source:
    each asks the tensor for its `xp` (a property that calls `get_array_module`), and forward
    and backward only use `xp.*`. The bigger fused ops in `tinylora/functional.py` (GELU,
    softmax, attention) do the same.
    '''),
    code('''
    print(inspect.getsource(Tensor.tanh))
    print(inspect.getsource(Tensor.sigmoid))
    '''),
    md(r'''
    ## 2. Moving a model

    `Tensor.to(device)` copies one tensor; `Module.to(device)` moves every parameter in place.
    Move the model **before** creating the optimizer (its state is created where the
    parameters are). Token ids may stay NumPy: the model moves them to its own device.
    '''),
    code('''
    device = "cuda" if GPU else "cpu"
    t = Tensor([1.0, 2.0, 3.0])
    print("tensor:", t.device, "->", t.to(device).device)

    model = GPT(GPTConfig.preset("micro"), seed=0).to(device)
    print("model parameters live on:", {p.device for p in model.parameters()})
    ids = np.zeros((2, 8), dtype=np.int64)
    logits, _ = model(ids)
    print("logits:", logits.shape, "on", logits.device, "| array type:", type(logits.data).__module__)
    '''),
    md(r'''
    ## 3. Timing a training step

    A training step is forward, backward and an AdamW update. We time the same step on each
    available device, after a warm-up step (the first CuPy call on a GPU compiles its kernels).
    On the GPU, reading the loss with `.item()` waits for the GPU to finish, so the clock is
    honest. The small models here are too small to keep a large GPU busy; the gap grows with
    the model (try the "bench" preset). For scale: the full version of this cell on an NVIDIA
    H200 with CuPy 14.2 printed 147 ms per step on its 16 CPU cores and 37.8 ms on the GPU, a
    3.9x speed-up for the 0.8M-parameter `base` preset at batch 32.
    '''),
    code('''
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
    '''),
    md(r'''
    ## Check yourself

    1. What does `get_array_module` return for a NumPy array, and for a CuPy array?
    2. Why should the optimizer be created after `model.to("cuda")`?
    3. Why is the first training step on a GPU left out of the timing?
    4. Why must the clock wait (here via `loss.item()`) before reading the GPU time?

    <details><summary>Answers</summary>

    1. The module `numpy`, and the module `cupy`: the library that owns the array's memory.
    2. AdamW creates its moment buffers next to the parameters when it first sees them;
       created before the move, they would stay on the CPU.
    3. CuPy compiles and caches its kernels on first use; that one-off cost is not the step time.
    4. GPU calls are asynchronous: Python gets control back before the GPU has finished.
       Copying the loss to the host forces the wait.
    </details>
    '''),
]


NOTEBOOKS = {
    "01_autograd.ipynb": NB01,
    "02_transformer.ipynb": NB02,
    "03_lora.ipynb": NB03,
    "04_rank_sweep.ipynb": NB04,
    "05_gpu.ipynb": NB05,
}


def build(name: str):
    """The notebook ``name`` with outputs stripped and deterministic cell ids."""
    nb = new_notebook(metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    prefix = name.split("_")[0]
    for i, cell in enumerate(NOTEBOOKS[name]):
        cell = nbformat.from_dict(dict(cell))
        cell["id"] = f"{prefix}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(name)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report notebooks that differ from this script")
    parser.add_argument("names", nargs="*", help="notebook files to build (default: all)")
    args = parser.parse_args(argv)
    stale = []
    for name in args.names or NOTEBOOKS:
        name = Path(name).name
        path, text = HERE / name, render(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    for name in stale:
        print(f"{name} differs from notebooks/_build.py; run `python notebooks/_build.py`")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
