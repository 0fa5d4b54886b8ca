"""Optimizers and fit when values go bad: float16, non-finite norms and losses, bad checkpoints.

Each test states in a comment what happened before the fix.
"""
import numpy as np
import pytest

from tinylora import lora
from tinylora.models import GPT, GPTConfig
from tinylora.nn import Linear, Parameter
from tinylora.optim import SGD, AdamW, clip_grad_norm_
from tinylora.train import fit


def test_adamw_keeps_float16_state_in_float32_so_a_zero_gradient_stays_finite():
    w = Parameter(np.array([0.5, -0.25], dtype=np.float16))
    opt = AdamW([w], lr=0.1, weight_decay=0.0)
    w.grad = np.zeros(2, dtype=np.float16)  # before: eps = 1e-8 rounded to 0 in float16, 0 / 0 = NaN
    opt.step()
    np.testing.assert_array_equal(w.data, [0.5, -0.25])
    assert w.dtype == np.float16 and opt.state[w]["exp_avg"].dtype == np.float32


def test_a_float16_lora_with_b_zero_stays_finite_after_one_adamw_step():
    model = GPT(GPTConfig.preset("nano"), seed=0)
    peft = lora.apply_lora(model, lora.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft.to(np.float16)
    trainable = [p for p in peft.parameters() if p.requires_grad]
    opt = AdamW(trainable, lr=1e-2)
    x = np.arange(32).reshape(2, 16) % 7
    _, loss = peft(x, x)
    loss.backward()  # B = 0 gives A an exactly zero gradient
    opt.step()  # before: every A became NaN here
    assert all(np.isfinite(p.data).all() for p in trainable)


def test_clip_grad_norm_raises_on_an_inf_gradient_when_asked_and_changes_nothing():
    w = Parameter(np.zeros(2, dtype=np.float32))
    w.grad = np.array([np.inf, 1.0], dtype=np.float32)
    with pytest.raises(RuntimeError, match="total gradient norm is inf"):
        clip_grad_norm_([w], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(w.grad, [np.inf, 1.0])


def test_clip_grad_norm_by_default_returns_the_inf_norm_and_scales_as_pytorch_does():
    w = Parameter(np.zeros(2, dtype=np.float32))
    w.grad = np.array([np.inf, 1.0], dtype=np.float32)
    with np.errstate(invalid="ignore"):
        norm = clip_grad_norm_([w], 1.0)  # PyTorch: scale by max_norm / (inf + 1e-6) = 0
    assert norm == np.inf
    assert np.isnan(w.grad[0]) and w.grad[1] == 0.0


def test_adamw_step_with_a_wrongly_shaped_gradient_changes_nothing():
    a, b = Parameter(np.ones(2, dtype=np.float32)), Parameter(np.ones(3, dtype=np.float32))
    opt = AdamW([a, b], lr=0.1, weight_decay=0.5)
    a.grad = np.ones(2, dtype=np.float32)
    b._grad = np.ones(4, dtype=np.float32)  # bypasses the .grad check, as a buggy hook might
    with pytest.raises(ValueError, match=r"parameter 1 \(shape \(3,\).*has shape \(4,\)"):
        opt.step()  # before: a was decayed and stepped, and the step counter advanced
    np.testing.assert_array_equal(a.data, [1.0, 1.0])
    assert opt.state == {}


@pytest.mark.parametrize("state_dict, match", [
    ({}, "keys 'state' and 'param_groups'"),
    ({"state": {}, "param_groups": "x"}, "'param_groups' must be a list"),
])
def test_optimizer_load_state_dict_refuses_a_malformed_dict(state_dict, match):
    opt = AdamW([Parameter(np.zeros(1, dtype=np.float32))], lr=0.1)
    with pytest.raises(ValueError, match=match):  # before: {} raised KeyError('param_groups')
        opt.load_state_dict(state_dict)
    assert opt.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("key, value, match", [
    ("lr", -5, "lr must be a number >= 0, got -5"),
    ("lr", float("inf"), "lr must be a finite number"),
    ("eps", "1e-8", "eps must be a number, got '1e-8'"),
])
def test_optimizer_load_state_dict_refuses_bad_hyperparameters_and_changes_nothing(key, value, match):
    w = Parameter(np.zeros(1, dtype=np.float32))
    opt = AdamW([w], lr=0.1)
    saved = opt.state_dict()
    saved["param_groups"][0][key] = value  # before: lr = -5 was loaded and used
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(saved)
    assert opt.param_groups[0][key] == {"lr": 0.1, "eps": 1e-8}[key]


def test_optimizer_load_state_dict_refuses_a_nan_moment():
    w = Parameter(np.zeros(2, dtype=np.float32))
    opt = AdamW([w], lr=0.1)
    w.grad = np.ones(2, dtype=np.float32)
    opt.step()
    saved = opt.state_dict()
    saved["state"][0]["exp_avg"] = np.array([np.nan, 0.0], dtype=np.float32)
    with pytest.raises(ValueError, match="state 'exp_avg' of parameter 0 holds 1 non-finite value"):
        opt.load_state_dict(saved)


def test_fit_names_float16_as_the_cause_when_a_float16_model_diverges():
    model = GPT(GPTConfig.preset("nano"), seed=0).to(np.float16)
    x = np.arange(32).reshape(2, 16) % 7
    huge = lambda model, x, y: (model(x)[0] * 1e4).sum()  # noqa: E731  overflows float16's 65504
    with pytest.raises(FloatingPointError, match="at step 1: the parameters are float16") as info:
        fit(model, lambda rng: (x, x), steps=2, loss_fn=huge, progress=False)
    assert info.value.step == 1  # before: the advice was always "lower the learning rate"


def test_fit_at_a_huge_learning_rate_raises_with_the_step_and_the_learning_rate():
    model = GPT(GPTConfig.preset("nano"), seed=0)
    before = model.state_dict()
    too_high = r"at step \d+: the learning rate is probably too high"
    with pytest.raises(FloatingPointError, match=too_high) as info:
        fit(model, np.arange(500) % 7, steps=6, lr=1e30, progress=False)
    assert 2 <= info.value.step <= 6  # step 1's loss is that of the untouched model
    assert any(not np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_fit_checks_the_parameters_after_the_last_step_too():
    layer = Linear(2, 1, rng=np.random.default_rng(0))
    layer.config = None
    x = np.ones((4, 2), dtype=np.float32)

    def loss_fn(model, x, y):  # a finite loss (about 1e30) whose gradient, 1e30, overflows at lr = 1e10
        return model.weight.sum() * np.float32(1e30)

    # before: the single step wrote inf into the weights and fit returned a history as if all was well
    with pytest.raises(FloatingPointError, match="after the last update"):
        fit(layer, lambda rng: (x, x), steps=1, optimizer=SGD(layer.parameters(), lr=1e10), grad_clip=None,
            loss_fn=loss_fn, progress=False, block_size=2)


def test_load_state_dict_refuses_a_nan_weight_by_name_and_leaves_the_model_unchanged():
    layer = Linear(3, 2, rng=np.random.default_rng(0))
    before = layer.state_dict()
    state = dict(before, weight=np.full((2, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="'weight' holds 6 non-finite values"):  # before: loaded silently
        layer.load_state_dict(state)
    assert all(np.array_equal(layer.state_dict()[k], v) for k, v in before.items())


def test_a_checkpoint_holding_a_complex_array_is_refused_naming_the_tensor(tmp_path):
    from tinylora.io import load_arrays, save_arrays
    path = tmp_path / "c.npz"
    save_arrays(path, {"w": np.ones(2, dtype=np.float32)}, {})
    arrays = dict(np.load(path))
    arrays["w"] = np.ones(2, dtype=complex)
    np.savez(path, **arrays)  # before: load_arrays returned the complex array as is
    with pytest.raises(TypeError, match="w must be an array of real numbers"):
        load_arrays(path)
