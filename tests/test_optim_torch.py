"""Reference tests: SGD, AdamW and clip_grad_norm_ match PyTorch step for step (skipped without torch).

Both libraries start from the same weights and receive the same gradients at every step, so
any difference comes from the update rule alone.
"""
from __future__ import annotations

import numpy as np
import pytest

from tinylora.nn import Parameter
from tinylora.optim import SGD, AdamW, clip_grad_norm_

torch = pytest.importorskip("torch")

SHAPES = [(4, 3), (3,)]  # a weight matrix and a bias
STEPS = 5


def run_both(ours_cls, torch_cls, dtype, groups):
    """Run STEPS steps in both libraries; ``groups`` is a list of per-group option dicts (one per shape)."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=shape).astype(dtype) for shape in SHAPES]
    grads = [[rng.normal(size=shape).astype(dtype) for shape in SHAPES] for _ in range(STEPS)]
    ours = [Parameter(w.copy()) for w in start]
    theirs = [torch.nn.Parameter(torch.tensor(w)) for w in start]
    lr = groups[0]["lr"]  # SGD needs a default lr even when every group sets its own
    ours_opt = ours_cls([{"params": [p], **options} for p, options in zip(ours, groups)], lr=lr)
    theirs_opt = torch_cls([{"params": [p], **options} for p, options in zip(theirs, groups)], lr=lr)
    for step_grads in grads:
        for p, q, g in zip(ours, theirs, step_grads):
            p.grad, q.grad = g.copy(), torch.tensor(g)
        ours_opt.step()
        theirs_opt.step()
    return [p.data for p in ours], [q.detach().numpy() for q in theirs]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [
    {"lr": 0.01},
    {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
    {"lr": 0.01, "weight_decay": 0.0},
], ids=["defaults", "custom", "no-decay"])
def test_adamw_matches_torch_for_five_steps(dtype, options):
    ours, theirs = run_both(AdamW, torch.optim.AdamW, dtype, [options, options])
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1},
    {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1, "nesterov": True},
], ids=["plain", "momentum", "nesterov", "momentum+decay", "nesterov+decay"])
def test_sgd_matches_torch_for_five_steps(dtype, options):
    ours, theirs = run_both(SGD, torch.optim.SGD, dtype, [options, options])
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_adamw_param_groups_with_different_lr_match_torch():
    groups = [{"lr": 0.01}, {"lr": 0.1, "weight_decay": 0.0}]  # e.g. LoRA+: a larger lr for B
    ours, theirs = run_both(AdamW, torch.optim.AdamW, np.float32, groups)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("max_norm", [0.5, 100.0], ids=["clips", "leaves-alone"])
def test_clip_grad_norm_matches_torch(max_norm):
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]
    ours = [Parameter(np.zeros(shape, dtype=np.float32)) for shape in SHAPES]
    theirs = [torch.nn.Parameter(torch.zeros(shape)) for shape in SHAPES]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = g.copy(), torch.tensor(g)
    ours_total = clip_grad_norm_(ours, max_norm)
    theirs_total = torch.nn.utils.clip_grad_norm_(theirs, max_norm).item()
    assert ours_total == pytest.approx(theirs_total, rel=1e-6)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=0, atol=1e-6)
