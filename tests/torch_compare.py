"""The shared PyTorch reference check: the same float64 inputs and upstream gradient through both."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora import Tensor


def compare(ours, theirs, *arrays, rtol=1e-10, atol=1e-12):
    """Run ``ours(*Tensors)`` and ``theirs(*torch tensors)`` on the same float64 arrays; compare all."""
    torch = pytest.importorskip("torch")
    mine = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    ref = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, expected = ours(*mine), theirs(*ref)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=rtol, atol=atol)

    upstream = np.random.default_rng(1).uniform(0.5, 1.5, size=out.shape)
    out.backward(upstream)
    expected.backward(torch.tensor(upstream))
    for i, (m, r) in enumerate(zip(mine, ref)):
        np.testing.assert_allclose(m.grad, r.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")
