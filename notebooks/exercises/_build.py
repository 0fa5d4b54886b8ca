"""Generate the exercise notebooks from the data below.

    python notebooks/exercises/_build.py            # (re)write every exercise notebook
    python notebooks/exercises/_build.py --check    # exit 1 if a committed notebook differs from its source here

Each notebook has the same five cells: the statement (Markdown + LaTeX), the imports, what to
do, the stub (tagged ``exercise-stub``) and the check (tagged ``exercise-check``). Cell ids are
fixed and outputs empty, so running the script twice gives identical files. The solutions in
``solutions/`` are written by hand; the notebooks never import them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only building needs nbformat: the exercise list itself imports without it
    import nbformat

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
YOUR_TURN = ("## Your turn\n\n"
             "Replace the `raise NotImplementedError(...)` line with your code and run the cell, then run the "
             "check below. It tries your function on several inputs and either prints ✓ or tells you which "
             "case failed, what it expected, what you returned, and a hint. Work with plain NumPy "
             "(`import numpy as np`); inputs are float64 arrays.")


@dataclass
class Exercise:
    number: int
    name: str            # the file name: NN_name.ipynb
    statement: str       # Markdown, starting with the title
    stub: str            # Python source of the function(s) the student writes
    check: str           # e.g. "check_unbroadcast(unbroadcast)"
    further: str = ""    # Markdown: questions for after the check passes

    @property
    def filename(self) -> str:
        return f"{self.number:02d}_{self.name}.ipynb"

    @property
    def checker(self) -> str:
        return self.check.split("(")[0]


EXERCISES = [
    Exercise(1, "unbroadcast", r"""# Exercise 1: the backward of a broadcasting add

When NumPy adds `x` of shape `(5, 1, 3)` to `y` of shape `(2, 5, 4, 3)`, it first *broadcasts* `x`:
it puts new axes on the left until both have as many dimensions, then repeats `x` along every
axis where it has size 1. The sum $z = x + y$ has shape `(2, 5, 4, 3)`.

In backward we receive $g = \partial L / \partial z$, which has $z$'s shape, and need
$\partial L / \partial x$, which has $x$'s shape. Each element $x_k$ was copied into many elements
of $z$, and the gradients of all the copies add up:

$$\frac{\partial L}{\partial x_k} = \sum_{m \,\in\, \text{copies of } x_k} g_m .$$

So: sum $g$ over the leading axes that $x$ does not have, then over every axis where $x$ has size 1
while $g$ does not, keeping that axis (size 1).

**Write** `unbroadcast(grad, shape)`, which returns an array of exactly `shape`.

| `grad.shape` | `shape` | sum over |
|---|---|---|
| `(4, 3)` | `(3,)` | axis 0 |
| `(4, 3)` | `(4, 1)` | axis 1, keeping it |
| `(2, 5, 4, 3)` | `(5, 1, 3)` | axis 0, then axis 2 of what is left, keeping it |
| `(6,)` | `()` | everything |

tinylora's engine uses one such helper for every broadcasting op (`+`, `-`, `*`, `/`).""",
             '''def unbroadcast(grad, shape):
    """Sum grad back down to shape, undoing NumPy broadcasting. Returns an array of exactly `shape`."""
    raise NotImplementedError("Exercise 1: sum grad over the broadcast axes")
''', "check_unbroadcast(unbroadcast)",
             "Why does `x * y` need the same helper, applied to `grad * y`? What changes for `x - y`?"),

    Exercise(2, "matmul_backward", r"""# Exercise 2: the backward of a matrix product

Let $Y = A B$ with $A$ of shape $(m, k)$, $B$ of shape $(k, n)$ and $Y$ of shape $(m, n)$:

$$Y_{ij} = \sum_{p} A_{ip} B_{pj}.$$

Given $G = \partial L / \partial Y$, of shape $(m, n)$, find $\partial L / \partial A$ $(m, k)$ and
$\partial L / \partial B$ $(k, n)$. Start from one element: by the chain rule
$\partial L / \partial A_{ip} = \sum_j G_{ij}\, \partial Y_{ij} / \partial A_{ip}$; then write the sum as a
matrix product.

**Write** `matmul_backward(a, b, grad_out)`, which returns the tuple `(grad_a, grad_b)`.

A check you can always make: each gradient has the shape of its input, and there is only one way
to combine an $(m, n)$ matrix with $B$ or $B^\top$ that gives $(m, k)$.

<details><summary>Stuck?</summary>

$\partial Y_{ij} / \partial A_{ip} = B_{pj}$, so $\partial L / \partial A_{ip} = \sum_j G_{ij} B_{pj} = (G B^\top)_{ip}$.
</details>""",
             '''def matmul_backward(a, b, grad_out):
    """Gradients of out = a @ b. a (m, k), b (k, n), grad_out (m, n) -> (grad_a (m, k), grad_b (k, n))."""
    raise NotImplementedError("Exercise 2: the gradients of a @ b")
''', "check_matmul_backward(matmul_backward)",
             "Why does a bias-free `Linear` layer, `x @ W.T`, need the same two products? Which one does a "
             "frozen weight let you skip?"),

    Exercise(3, "cross_entropy_backward", r"""# Exercise 3: softmax and cross-entropy, backward

A language model scores $C$ classes (tokens) at each of $N$ positions: logits $z$ of shape $(N, C)$.
With targets $t_n \in \{0, \dots, C-1\}$, the loss is the mean negative log-probability of the targets:

$$p_{nc} = \frac{e^{z_{nc}}}{\sum_{c'} e^{z_{nc'}}}, \qquad L = -\frac{1}{N} \sum_{n=1}^{N} \log p_{n, t_n}.$$

**Derive** $\partial L / \partial z_{nc}$, then **write** `cross_entropy_backward(logits, targets)`, which
returns an array of the logits' shape.

Two things to watch:
- the loss is a *mean* over the $N$ positions;
- logits can be large (the checker uses values near 1000): $e^{1000}$ overflows. Softmax does not change
  when you subtract the same number from a whole row, so subtract each row's maximum first.

<details><summary>Stuck?</summary>

$\log p_{n,t} = z_{nt} - \log \sum_{c'} e^{z_{nc'}}$, so $\partial \log p_{n,t} / \partial z_{nc} = [c = t] - p_{nc}$.
</details>""",
             '''def cross_entropy_backward(logits, targets):
    """Gradient of the mean cross-entropy. logits (N, C) float, targets (N,) int -> dlogits (N, C)."""
    raise NotImplementedError("Exercise 3: the gradient of the mean cross-entropy")
''', "check_cross_entropy_backward(cross_entropy_backward)",
             "Each row of your answer sums to zero. Why? What does that say about adding a constant to every logit?"),

    Exercise(4, "layer_norm_backward", r"""# Exercise 4: layer-norm backward

Layer norm works on the last axis of $x$ (size $D$), separately for every row:

$$\mu = \frac{1}{D}\sum_{d} x_d, \qquad \sigma^2 = \frac{1}{D}\sum_{d} (x_d - \mu)^2, \qquad
\hat{x} = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad y = \hat{x} \odot w + b.$$

Given $g = \partial L / \partial y$ (same shape as $x$), **write**
`layer_norm_backward(x, weight, grad_out, eps)`, which returns `(dx, dweight, dbias)`:
- `dweight` and `dbias` have shape $(D,)$: the same $w$ and $b$ serve every row, so their gradients
  add up over all the leading axes (`x` may be 2-D, 3-D or 4-D);
- `dx` has the shape of `x`. The hard part: $\mu$ and $\sigma$ depend on $x$ too.

<details><summary>Stuck?</summary>

Let $\hat{g} = g \odot w$ (the gradient that reaches $\hat{x}$) and write $\overline{v}$ for the mean of $v$
over the last axis. Then

$$\frac{\partial L}{\partial x} = \frac{1}{\sqrt{\sigma^2 + \varepsilon}}
\left(\hat{g} - \overline{\hat{g}} - \hat{x}\,\overline{\hat{g} \odot \hat{x}}\right).$$

The middle term comes from $\mu$, the last from $\sigma$.
</details>""",
             '''def layer_norm_backward(x, weight, grad_out, eps):
    """Gradients of layer norm. x (..., D), weight (D,), grad_out (..., D) -> (dx, dweight (D,), dbias (D,))."""
    raise NotImplementedError("Exercise 4: the gradients of layer norm")
''', "check_layer_norm_backward(layer_norm_backward)",
             "Show that every row of `dx` sums to zero. Why must it, given what layer norm does to a row's mean?"),

    Exercise(5, "causal_mask", r"""# Exercise 5: the causal mask

A GPT predicts token $i + 1$ from tokens $0, \dots, i$. In self-attention, query position $i$ must
therefore never look at a key position $j > i$: that would be reading the answer.

**Write** `causal_mask(T)`, which returns a `(T, T)` **bool** array with `mask[i, j] = True` when query
$i$ *may attend* to key $j$, that is when $j \le i$ (the past and the token itself). For $T = 3$:

```
[[ True, False, False],
 [ True,  True, False],
 [ True,  True,  True]]
```

The checker compares with where tinylora's own `scaled_dot_product_attention(..., causal=True)` puts weight.""",
             '''def causal_mask(T):
    """(T, T) bool array: True where query i may attend to key j (j <= i)."""
    raise NotImplementedError("Exercise 5: build the causal mask")
''', "check_causal_mask(causal_mask)",
             "Exercise 10 uses this mask inside the attention softmax."),

    Exercise(6, "lora_forward", r"""# Exercise 6: the LoRA forward pass

LoRA (Hu et al., 2021) freezes a weight $W_0$ of shape $(d_{out}, d_{in})$ and learns a low-rank change
$\Delta W = B A$ with $A$ of shape $(r, d_{in})$, $B$ of shape $(d_{out}, r)$ and $r \ll \min(d_{in}, d_{out})$.
The paper writes column vectors, $h = W_0 x + \frac{\alpha}{r} B A x$. Our activations are rows,
`x` of shape `(..., d_in)`, so the same layer reads

$$h = x W_0^\top + \frac{\alpha}{r}\, x A^\top B^\top .$$

The scaling $\alpha / r$ keeps the update's size about the same when you change the rank, so the
learning rate need not be retuned.

**Write** `lora_forward(x, W0, A, B, alpha, r)`, which returns `h` of shape `(..., d_out)`.

(In a fresh adapter $B = 0$, so $h = x W_0^\top$. The checker uses a random $B$, or the adapter's path would be invisible.)""",
             '''def lora_forward(x, W0, A, B, alpha, r):
    """h = x W0^T + (alpha/r) x A^T B^T. x (..., in), W0 (out, in), A (r, in), B (out, r) -> (..., out)."""
    raise NotImplementedError("Exercise 6: the LoRA forward pass")
''', "check_lora_forward(lora_forward)",
             "Count the multiply-adds of `x @ A.T @ B.T` and of `x @ (B @ A).T` for one row of x. Which is cheaper, and when?"),

    Exercise(7, "merge_unmerge", r"""# Exercise 7: merge and unmerge

After training, the adapter can be folded into the weight so inference costs nothing extra:

$$W = W_0 + \frac{\alpha}{r} B A, \qquad\text{then}\qquad h = x W^\top .$$

To switch adapters, take it out again: $W_0 = W - \frac{\alpha}{r} B A$.

**Write** `merge(W0, A, B, alpha, r)` and `unmerge(W, A, B, alpha, r)`. Both return a new `(d_out, d_in)` array
and leave their inputs unchanged (the checker notices `W0 += ...`). `unmerge(merge(W0, ...), ...)` gives `W0`
back, up to rounding.""",
             '''def merge(W0, A, B, alpha, r):
    """W = W0 + (alpha/r) B A. W0 (out, in), A (r, in), B (out, r) -> (out, in)."""
    raise NotImplementedError("Exercise 7: merge the adapter into W0")


def unmerge(W, A, B, alpha, r):
    """W0 = W - (alpha/r) B A, the inverse of merge."""
    raise NotImplementedError("Exercise 7: take the adapter out of W")
''', "check_merge_unmerge(merge, unmerge)",
             "In float32, `unmerge(merge(W0))` is not exactly `W0`. How large is the error, and why?"),

    Exercise(8, "trainable_params", r"""# Exercise 8: counting trainable parameters

Fine-tuning a layer with weight $(d_{out}, d_{in})$ trains $d_{out} \cdot d_{in}$ numbers. LoRA of rank $r$
trains only $A$ $(r, d_{in})$ and $B$ $(d_{out}, r)$:

$$\text{trainable} = \sum_{\text{adapted layers}} r\,(d_{in} + d_{out}).$$

**Write** `lora_trainable_params(layer_shapes, r)`: `layer_shapes` is a list of `(d_out, d_in)` pairs, one per
adapted layer; return an `int`.

The checker builds real tinylora GPTs, adapts them with `apply_lora`, and compares your count with
`tinylora.lora.count_parameters(model)`. For example the "nano" GPT with `q_proj` and `v_proj` adapted
in its 2 blocks (four $32 \times 32$ layers) at $r = 4$ trains $4 \cdot 4 \cdot (32 + 32) = 1024$ parameters.""",
             '''def lora_trainable_params(layer_shapes, r):
    """Number of LoRA parameters: layer_shapes is a list of (d_out, d_in); returns an int."""
    raise NotImplementedError("Exercise 8: count LoRA's trainable parameters")
''', "check_lora_trainable_params(lora_trainable_params)",
             "For a square $d \\times d$ layer, at which rank does LoRA train as many parameters as full fine-tuning?"),

    Exercise(9, "subspace_similarity", r"""# Exercise 9: subspace similarity

Do two adapters trained with different ranks learn the same directions? The LoRA paper (Section 7.2)
compares the row spaces of their $A$ matrices. Take $A_1$ $(r_1, d_{in})$ and $A_2$ $(r_2, d_{in})$; let
$U_i$ $(d_{in}, i)$ hold the top-$i$ right-singular vectors of $A_1$ and $V_j$ $(d_{in}, j)$ the top-$j$ of $A_2$. Then

$$\phi(A_1, A_2, i, j) = \frac{\lVert U_i^\top V_j \rVert_F^2}{\min(i, j)} \in [0, 1],$$

which is 1 when one subspace contains the other and 0 when they are orthogonal.

**Write** `subspace_similarity(A1, A2, i, j)`, which returns a float.

`np.linalg.svd(A, full_matrices=False)` returns `(U, S, Vt)` with the singular values in `S` largest first;
the right-singular vectors of `A` are the **rows** of `Vt`. Example: $A_1$ spanning $e_1, e_2$ and $A_2$ spanning
$e_2, e_3$ in $\mathbb{R}^4$ share one of two directions, so $\phi = 1/2$.""",
             '''def subspace_similarity(A1, A2, i, j):
    """phi = ||U_i^T V_j||_F^2 / min(i, j). A1 (r1, in), A2 (r2, in), 1 <= i <= r1, 1 <= j <= r2 -> float."""
    raise NotImplementedError("Exercise 9: the subspace similarity of A1 and A2")
''', "check_subspace_similarity(subspace_similarity)",
             "Two random subspaces of $\\mathbb{R}^{d}$ give $\\phi \\approx \\max(i, j)/d$. Check it with random matrices, "
             "and compare with `tinylora.experiments.analysis.random_subspace_similarity`."),

    Exercise(10, "masked_attention", r"""# Exercise 10: masked attention weights

Attention turns scores $s$ of shape `(..., T, T)` (query $i$, key $j$) into weights that sum to 1 over the
keys. A causal model first hides the future keys:

$$a_{ij} = \frac{e^{s_{ij} + m_{ij}}}{\sum_{j'} e^{s_{ij'} + m_{ij'}}}, \qquad
m_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i \end{cases}$$

so $a_{ij} = 0$ for $j > i$ and every row still sums to 1.

**Write** `masked_attention_weights(scores)`, which returns an array of the scores' shape. The scores can be
large (the checker uses values in the hundreds): subtract each row's maximum before `np.exp`. `np.where(mask, scores, -np.inf)`
is a handy way to mask. Exercise 5's mask is what you need here.""",
             '''def masked_attention_weights(scores):
    """Softmax over keys of the causally masked scores. scores (..., T, T) -> weights (..., T, T)."""
    raise NotImplementedError("Exercise 10: mask the future, then softmax over keys")
''', "check_masked_attention_weights(masked_attention_weights)",
             "Why is masking with $-\\infty$ before the softmax not the same as zeroing the weights after it?"),
]


def build(ex: Exercise) -> nbformat.NotebookNode:
    """The notebook for one exercise, with fixed cell ids and no outputs."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    further = f"## Going further\n\n{ex.further}" if ex.further else ""
    cells = [
        nbformat.v4.new_markdown_cell(ex.statement),
        nbformat.v4.new_code_cell(f"import numpy as np\n\nfrom tinylora.exercises import {ex.checker}"),
        nbformat.v4.new_markdown_cell(YOUR_TURN),
        nbformat.v4.new_code_cell(ex.stub.rstrip("\n"), metadata={"tags": ["exercise-stub"]}),
        nbformat.v4.new_code_cell(ex.check, metadata={"tags": ["exercise-check"]}),
    ] + ([nbformat.v4.new_markdown_cell(further)] if further else [])
    for i, cell in enumerate(cells):
        cell.id = f"ex{ex.number:02d}-cell{i}"
    nb.cells = cells
    return nb


def main(out_dir: Path = HERE) -> list[Path]:
    import nbformat

    paths = []
    for ex in EXERCISES:
        path = out_dir / ex.filename
        nbformat.write(build(ex), path)
        paths.append(path)
    return paths


def stale(out_dir: Path = HERE) -> list[str]:
    """Names of the notebooks that are missing or differ from what ``build`` makes."""
    import nbformat

    return [ex.filename for ex in EXERCISES
            if not (out_dir / ex.filename).exists() or nbformat.read(out_dir / ex.filename, as_version=4) != build(ex)]


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        differ = stale()
        print("\n".join(f"out of date: {name}" for name in differ) or "all exercise notebooks are up to date")
        sys.exit(1 if differ else 0)
    for written in main():
        print(written)
