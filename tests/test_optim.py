"""Optimizers, gradient clipping and the learning-rate schedule.

Update tests take the ``backend`` fixture: on the strict fake CuPy any NumPy call inside an
update fails, and float32 must stay float32 everywhere.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tinylora.backend import asnumpy
from tinylora.nn import Linear, Parameter
from tinylora.optim import SGD, AdamW, WarmupCosine, clip_grad_norm_, warmup_cosine

TARGET = [1.0, -2.0, 3.0]


def parameter(make, values, dtype=np.float32):
    """A Parameter on the current backend."""
    return Parameter(make(values, dtype=dtype).data)


def minimise_quadratic(optimizer, w, make, steps):
    """Run ``steps`` steps on f(w) = sum((w - TARGET)^2); return w as a host list."""
    target = make(TARGET, dtype=w.dtype)
    for _ in range(steps):
        optimizer.zero_grad()
        ((w - target) ** 2).sum().backward()
        optimizer.step()
    return asnumpy(w.data).tolist()


# ---- reaching the minimum ---------------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}])
def test_sgd_reaches_the_minimum_of_a_quadratic(backend, make, options):
    w = parameter(make, [0.0, 0.0, 0.0])
    assert (minimise_quadratic(SGD([w], lr=0.1, **options), w, make, steps=200)
            == pytest.approx(TARGET, abs=1e-4))


def test_adamw_reaches_the_minimum_of_a_quadratic(backend, make):
    w = parameter(make, [0.0, 0.0, 0.0])
    optimizer = AdamW([w], lr=0.1, weight_decay=0.0)
    schedule = WarmupCosine(optimizer, warmup_steps=0, total_steps=300, min_lr_ratio=0.0)
    target = make(TARGET, dtype=np.float32)
    for _ in range(300):
        optimizer.zero_grad()
        ((w - target) ** 2).sum().backward()
        optimizer.step()
        schedule.step()
    assert asnumpy(w.data).tolist() == pytest.approx(TARGET, abs=1e-3)


def test_sgd_first_step_is_minus_lr_times_gradient():
    w = Parameter(np.array([1.0, 2.0], dtype=np.float32))
    w.grad = np.array([10.0, -10.0], dtype=np.float32)
    SGD([w], lr=0.01).step()
    assert w.data.tolist() == pytest.approx([0.9, 2.1])


def test_adamw_weight_decay_shrinks_weights_even_with_a_zero_gradient():
    w = Parameter(np.array([2.0], dtype=np.float32))
    w.grad = np.zeros(1, dtype=np.float32)
    AdamW([w], lr=0.1, weight_decay=0.5).step()  # w * (1 - 0.1 * 0.5); the Adam step is 0
    assert w.data.tolist() == pytest.approx([1.9])


# ---- what gets updated and what gets state --------------------------------------------------------
@pytest.mark.parametrize("make_optimizer", [
    lambda params: AdamW(params, lr=0.1, weight_decay=0.1),
    lambda params: SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1),
], ids=["AdamW", "SGD"])
def test_frozen_parameters_get_no_state_and_stay_bit_identical(backend, make, make_optimizer):
    trainable, frozen = parameter(make, [1.0, 2.0]), parameter(make, [3.0, 4.0])
    frozen.requires_grad = False
    frozen.grad = make([5.0, 5.0], dtype=np.float32).data  # even a stale gradient is ignored
    before = frozen.numpy()
    optimizer = make_optimizer([trainable, frozen])
    for _ in range(3):
        trainable.grad = make([1.0, 1.0], dtype=np.float32).data
        optimizer.step()
    assert list(optimizer.state) == [trainable]
    assert frozen.numpy().tobytes() == before.tobytes()


def test_parameters_without_a_gradient_are_skipped():
    a, b = Parameter(np.ones(2, dtype=np.float32)), Parameter(np.ones(2, dtype=np.float32))
    a.grad = np.ones(2, dtype=np.float32)
    optimizer = AdamW([a, b], lr=0.1)
    optimizer.step()
    assert b not in optimizer.state and b.data.tolist() == [1.0, 1.0]


def test_param_groups_use_their_own_learning_rate():
    slow, fast = Parameter(np.zeros(1, dtype=np.float32)), Parameter(np.zeros(1, dtype=np.float32))
    optimizer = SGD([{"params": [slow]}, {"params": [fast], "lr": 1.0}], lr=0.1)
    slow.grad, fast.grad = np.ones(1, dtype=np.float32), np.ones(1, dtype=np.float32)
    optimizer.step()
    assert slow.data.tolist() == pytest.approx([-0.1]) and fast.data.tolist() == pytest.approx([-1.0])
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, 1.0]


def test_a_param_group_can_override_any_default():
    a, b = Parameter(np.ones(1, dtype=np.float32)), Parameter(np.ones(1, dtype=np.float32))
    optimizer = AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0, "betas": (0.5, 0.9)}], lr=0.1)
    assert (optimizer.param_groups[0]["weight_decay"] == 0.01
            and optimizer.param_groups[1]["weight_decay"] == 0.0)
    assert optimizer.param_groups[1]["betas"] == (0.5, 0.9)


def test_float32_parameters_and_optimizer_state_stay_float32(backend, make):
    a, b = parameter(make, [[1.0, 2.0]]), parameter(make, [[1.0, 2.0]])
    adamw, sgd = AdamW([a], lr=0.1), SGD([b], lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True)
    for _ in range(2):
        a.grad = make([[0.5, -0.5]], dtype=np.float32).data
        b.grad = make([[0.5, -0.5]], dtype=np.float32).data
        adamw.step()
        sgd.step()
    assert a.dtype == b.dtype == np.float32
    assert adamw.state[a]["exp_avg"].dtype == adamw.state[a]["exp_avg_sq"].dtype == np.float32
    assert sgd.state[b]["momentum_buffer"].dtype == np.float32


def test_step_leaves_the_gradient_unchanged():
    w = Parameter(np.ones(2, dtype=np.float32))
    w.grad = np.array([0.5, 0.25], dtype=np.float32)
    SGD([w], lr=0.1, weight_decay=0.1, momentum=0.9).step()
    assert w.grad.tolist() == [0.5, 0.25]


def test_zero_grad_sets_every_gradient_to_none():
    w = Parameter(np.ones(2, dtype=np.float32))
    w.grad = np.ones(2, dtype=np.float32)
    optimizer = SGD([w], lr=0.1)
    optimizer.zero_grad()
    assert w.grad is None


# ---- checkpoints --------------------------------------------------------------------------------
def test_optimizer_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(2, 3)).astype(np.float32) for _ in range(4)]
    first = Linear(3, 2, rng=np.random.default_rng(1))
    second = Linear(3, 2, rng=np.random.default_rng(1))
    opt_first = AdamW([first.weight], lr=0.01)
    for g in grads[:3]:
        first.weight.grad = g
        opt_first.step()
    second.load_state_dict(first.state_dict())
    opt_second = AdamW([second.weight], lr=0.5)
    saved = opt_first.state_dict()
    assert saved["state"][0]["step"] == 3 and type(saved["state"][0]["exp_avg"]) is np.ndarray
    opt_second.load_state_dict(saved)
    assert opt_second.param_groups[0]["lr"] == 0.01
    first.weight.grad = second.weight.grad = grads[3]
    opt_first.step()
    opt_second.step()
    assert np.array_equal(first.weight.data, second.weight.data)


def test_optimizer_load_state_dict_rejects_a_wrong_shape_and_changes_nothing():
    w = Parameter(np.ones(2, dtype=np.float32))
    optimizer = AdamW([w], lr=0.1)
    bad = {"state": {0: {"step": 1, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(2)}},
           "param_groups": [{"lr": 0.5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                             "params": [0]}]}
    with pytest.raises(ValueError,
                       match=r"'exp_avg' of parameter 0 has shape \(3,\), the parameter has \(2,\)"):
        optimizer.load_state_dict(bad)
    assert optimizer.state == {} and optimizer.param_groups[0]["lr"] == 0.1


# ---- bad arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("build, words", [
    (lambda ps: SGD(ps, lr=-0.1), "lr must be a number >= 0, got -0.1"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.5), "momentum must be a number >= 0, got -0.5"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1.0), "weight_decay must be a number >= 0, got -1.0"),
    (lambda ps: AdamW(ps, betas=(0.9, 1.0)), r"betas must be two numbers in \[0, 1\), got \(0.9, 1.0\)"),
    (lambda ps: AdamW(ps, betas=(-0.1, 0.9)), r"betas must be two numbers in \[0, 1\)"),
    (lambda ps: AdamW(ps, eps=0.0), "eps must be a number > 0, got 0.0"),
    (lambda ps: AdamW([{"params": ps, "lr": -1.0}]), "param group 0: lr must be a number >= 0, got -1.0"),
])
def test_bad_hyperparameters_are_value_errors_naming_them(build, words):
    with pytest.raises(ValueError, match=words):
        build([Parameter(np.ones(1, dtype=np.float32))])


def test_a_parameter_given_twice_is_a_value_error():
    w = Parameter(np.ones(1, dtype=np.float32))
    with pytest.raises(ValueError, match="appears twice"):
        AdamW([{"params": [w]}, {"params": [w], "lr": 0.1}])


def test_an_empty_parameter_list_is_a_value_error():
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)


def test_passing_a_module_instead_of_its_parameters_is_a_type_error():
    with pytest.raises(TypeError, match=r"pass model.parameters\(\)"):
        AdamW(Linear(2, 2))


# ---- gradient clipping --------------------------------------------------------------------------
def test_clip_grad_norm_returns_the_norm_and_scales_gradients_down(backend, make):
    a, b = parameter(make, [0.0, 0.0]), parameter(make, [0.0])
    a.grad, b.grad = make([3.0, 4.0], dtype=np.float32).data, make([12.0], dtype=np.float32).data
    total = clip_grad_norm_([a, b], max_norm=1.3)  # sqrt(9 + 16 + 144) = 13, so scale by 0.1
    assert total == pytest.approx(13.0)
    assert (asnumpy(a.grad).tolist() == pytest.approx([0.3, 0.4])
            and asnumpy(b.grad).tolist() == pytest.approx([1.2]))
    assert a.grad.dtype == np.float32


def test_clip_grad_norm_leaves_small_gradients_bit_identical():
    w = Parameter(np.zeros(2, dtype=np.float32))
    w.grad = np.array([0.3, 0.4], dtype=np.float32)
    assert clip_grad_norm_([w], max_norm=1.0) == pytest.approx(0.5)
    assert w.grad.tolist() == np.array([0.3, 0.4], dtype=np.float32).tolist()


def test_clip_grad_norm_skips_parameters_without_a_gradient():
    a, b = Parameter(np.zeros(1, dtype=np.float32)), Parameter(np.zeros(1, dtype=np.float32))
    a.grad = np.array([2.0], dtype=np.float32)
    assert clip_grad_norm_([a, b], max_norm=10.0) == pytest.approx(2.0)


@pytest.mark.parametrize("max_norm, error", [(0.0, ValueError), (-1.0, ValueError), ("1", TypeError)])
def test_clip_grad_norm_needs_a_positive_max_norm(max_norm, error):
    with pytest.raises(error, match="max_norm must be a number"):
        clip_grad_norm_([Parameter(np.zeros(1, dtype=np.float32))], max_norm)


# ---- learning-rate schedule -----------------------------------------------------------------------
@pytest.mark.parametrize("step, multiplier", [
    (0, 0.0),      # warmup starts from 0
    (5, 0.5),      # halfway through a 10-step warmup
    (10, 1.0),     # end of warmup: the full learning rate
    (60, 0.55),    # halfway down the cosine: 0.1 + 0.9 * 0.5
    (110, 0.1),    # the end: min_lr_ratio
    (500, 0.1),    # and it stays there
])
def test_warmup_cosine_multiplier_at_known_steps(step, multiplier):
    assert (warmup_cosine(step, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
            == pytest.approx(multiplier))


def test_warmup_cosine_without_warmup_starts_at_the_full_rate():
    assert warmup_cosine(0, warmup_steps=0, total_steps=100, min_lr_ratio=0.0) == 1.0
    assert warmup_cosine(25, 0, 100, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_warmup_cosine_schedule_scales_each_groups_base_lr():
    a, b = Parameter(np.zeros(1, dtype=np.float32)), Parameter(np.zeros(1, dtype=np.float32))
    optimizer = AdamW([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=1.0)
    schedule = WarmupCosine(optimizer, warmup_steps=4, total_steps=8, min_lr_ratio=0.5)
    assert schedule.get_lr() == [0.0, 0.0] and optimizer.param_groups[0]["lr"] == 0.0
    for _ in range(2):
        schedule.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.5, 0.05])
    for _ in range(6):
        schedule.step()
    assert schedule.get_lr() == pytest.approx([0.5, 0.05])  # min_lr_ratio * base lr


@pytest.mark.parametrize("args, words", [
    ((-1, 10, 100, 0.1), "step must be a non-negative int, got -1"),
    ((0, -5, 100, 0.1), "warmup_steps must be a non-negative int, got -5"),
    ((0, 10, 0, 0.1), "total_steps must be a positive int, got 0"),
    ((0, 10, 100, 1.5), r"min_lr_ratio must be a number in \[0, 1\], got 1.5"),
])
def test_warmup_cosine_bad_arguments_are_value_errors(args, words):
    with pytest.raises(ValueError, match=words):
        warmup_cosine(*args)
