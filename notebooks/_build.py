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
    print("parents of y:", [p.shape for p in y._parents], " <- (x*x) and sin(x)")
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
            return "input"
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
    `load_base()`, whose loss on recipes versus fables shows the domain shift LoRA will fix in
    notebook 03.
    '''),
    code('''
    import os

    import matplotlib.pyplot as plt
    import numpy as np

    import tinylora
    from tinylora import Tensor, no_grad
    from tinylora import functional as F
    from tinylora.data import CharTokenizer, load_corpus, train_val_split
    from tinylora.gpt import GPT, GPTConfig
    from tinylora.pretrained import base_corpus_splits, load_base
    from tinylora.train import estimate_loss, fit

    FAST = os.environ.get("TINYLORA_FAST") == "1"
    STEPS = 30 if FAST else 300
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
    panels = [(scores, "scores q·k/√d", "coolwarm"), (~hidden, "causal mask (dark = hidden)", "gray"),
              (weights, "softmax weights", "viridis")]
    for ax, (image, title, cmap) in zip(axes, panels):
        ax.imshow(image, cmap=cmap)
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


    print(sample(model, "The fox ", n=80 if FAST else 200))
    '''),
    md(r'''
    ## 6. The shipped base model

    A longer run of the same recipe (the "base" preset: 4 layers, 128 features) is shipped with
    the package, so every LoRA experiment starts from the same frozen weights. `load_base()`
    returns it with its tokenizer; `with_metadata=True` also tells how it was trained.
    '''),
    code('''
    base, tokenizer, meta = load_base(with_metadata=True)
    print({key: meta[key] for key in ("corpus", "preset", "steps", "final_val_loss", "parameters") if key in meta})
    for seed in range(2):
        print(f"--- sample {seed} ---")
        print(sample(base, "The ", n=120 if FAST else 300, seed=seed))
    '''),
    md(r'''
    ### Domain shift

    The base model has only ever read fables. How surprised is it by a recipe card, or by a
    column of sums? The loss on held-out text of each kind measures it (lower is better). The
    fables validation split is the one the base model never trained on.
    '''),
    code('''
    n_batches = 2 if FAST else 8
    _, fables_val = base_corpus_splits()
    held_out = {"fables": fables_val}
    for name in ("recipes", "arithmetic"):
        held_out[name] = tokenizer.encode(load_corpus(name, n_chars=20_000, seed=1))
    base_loss = {name: estimate_loss(base, ids, max_batches=n_batches) for name, ids in held_out.items()}
    micro_loss = {name: estimate_loss(model, ids, max_batches=n_batches) for name, ids in held_out.items()}
    for name in held_out:
        print(f"{name:10s}  base model {base_loss[name]:.3f}   our micro model {micro_loss[name]:.3f}")

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    positions = np.arange(len(held_out))
    ax.bar(positions - 0.2, list(base_loss.values()), 0.4, label="base (shipped)")
    ax.bar(positions + 0.2, list(micro_loss.values()), 0.4, label=f"micro ({STEPS} steps, above)")
    ax.set(xticks=positions, xticklabels=list(held_out), ylabel="loss (nats)", title="trained on fables, tested on ...")
    ax.legend()
    plt.show()
    '''),
    md(r'''
    The base model is good at fables and much worse at recipes and arithmetic: the characters
    are the same, but the structure (quantities, numbered steps, sums) is new. Notebook 03
    teaches it recipes **without touching its weights**.

    ## Check yourself

    1. Scores have shape (T, T). What do row $t$ and column $s$ mean?
    2. Why is the causal mask applied *before* the softmax, with $-\infty$, and not after it with 0?
    3. Why divide the scores by $\sqrt{d}$?
    4. How many parameters does one block of the base model ($C = 128$) have?
    5. What loss does a model that knows nothing get with 96 characters, and why?
    6. Why is the base model's loss on recipes higher than on fables?

    <details><summary>Answers</summary>

    1. How much query token $t$ attends to key token $s$ (before the softmax).
    2. Masking after the softmax would leave rows that no longer sum to 1; $-\infty$ becomes
       exactly 0 *inside* the softmax, which renormalises over the visible tokens only.
    3. The dot product of $d$-dimensional random vectors has variance $d$; dividing keeps the
       scores near unit variance so the softmax neither saturates nor loses its gradient.
    4. $12C^2 + 13C = 12 \cdot 16384 + 13 \cdot 128 = 198{,}272$.
    5. $\ln 96 \approx 4.56$ nats: the cross-entropy of a uniform guess.
    6. It learned the statistics of fables; recipes use other words, digits and layout.
    </details>
    '''),
]
