"""The engine against PyTorch: the same expression in both, comparing values and gradients."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora import asnumpy

torch = pytest.importorskip("torch")


def micrograd_expression(a, b):
    """The kind of scalar expression micrograd tests with, written once for both libraries."""
    c = a + b
    d = a * b + b ** 3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e ** 2
    g = f / 2.0
    g = g + 10.0 / f
    return (g.tanh() * a.sigmoid() + (a * a + 1).log() - (b / 4).exp()).sum()


def test_micrograd_expression_matches_torch_in_value_and_gradients(make):
    a0, b0 = np.array([-4.0, 0.5, 1.5]), np.array([2.0, -1.0, 0.3])
    a, b = make(a0, requires_grad=True), make(b0, requires_grad=True)
    ours = micrograd_expression(a, b)
    ours.backward()

    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a0, b0))
    theirs = micrograd_expression(ta, tb)
    theirs.backward()

    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    np.testing.assert_allclose(asnumpy(a.grad), ta.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(asnumpy(b.grad), tb.grad.numpy(), rtol=1e-10)


def test_matmul_softmax_chain_matches_torch(make, rng):
    x0, w0 = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))

    def chain(x, w):
        z = x @ w
        z = z - z.max(axis=-1, keepdims=True)
        return (z.exp() / z.exp().sum(axis=-1, keepdims=True)).transpose(0, 2, 1)[:, 1:].mean()

    x, w = make(x0, requires_grad=True), make(w0, requires_grad=True)
    chain(x, w).backward()
    tx, tw = torch.tensor(x0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    tz = tx @ tw  # the same chain; torch spells axis/keepdims as dim/keepdim and transpose as permute
    tz = tz - tz.max(dim=-1, keepdim=True).values
    (tz.exp() / tz.exp().sum(dim=-1, keepdim=True)).permute(0, 2, 1)[:, 1:].mean().backward()
    np.testing.assert_allclose(asnumpy(x.grad), tx.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(asnumpy(w.grad), tw.grad.numpy(), rtol=1e-10, atol=1e-14)


AWKWARD = [((5, 13, 24, 16), (5, 1, 24, 1)), ((1, 3, 1, 7, 1), (2, 1, 5, 1, 8))]
OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
       "mul": lambda a, b: a * b, "div": lambda a, b: a / b}


@pytest.mark.parametrize("shapes", AWKWARD, ids=["5x13x24x16-with-5x1x24x1", "1x3x1x7x1-with-2x1x5x1x8"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_awkward_broadcast_shapes_match_torch(make, rng, shapes, op):
    a0, b0 = (rng.standard_normal(s) for s in shapes)
    b0 = np.sign(b0) * (np.abs(b0) + 0.5)  # a divisor away from 0
    a, b = make(a0, requires_grad=True), make(b0, requires_grad=True)
    out = OPS[op](a, b)
    upstream = rng.standard_normal(out.shape)
    out.backward(make(upstream))

    ta, tb = torch.tensor(a0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    OPS[op](ta, tb).backward(torch.tensor(upstream))
    np.testing.assert_allclose(asnumpy(out.data), OPS[op](ta, tb).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(asnumpy(a.grad), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(asnumpy(b.grad), tb.grad.numpy(), rtol=1e-10, atol=1e-12)
