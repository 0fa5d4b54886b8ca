"""The Llama ops (rms_norm, silu, swiglu, rope): gradchecks, float32, formulas, PyTorch, bad input.

Every test that takes ``make`` runs on each backend (numpy, the strict fake CuPy, real CuPy).
"""
from __future__ import annotations

import numpy as np
import pytest

import tinylora.functional as F
from tinylora import Tensor, asnumpy, gradcheck
from tinylora.llama_ops import rope_tables

from .torch_compare import compare


def host(t):
    return asnumpy(t.data if isinstance(t, Tensor) else t)


def np_rope(x, offset, theta):
    T, hd = x.shape[-2], x.shape[-1]
    inv = theta ** -(np.arange(0, hd, 2) / hd)
    angles = np.arange(offset, offset + T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([angles, angles], -1)), np.sin(np.concatenate([angles, angles], -1))
    rotated = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
    return x * cos + rotated * sin


# ---- values against NumPy formulas -------------------------------------------------------
def test_rms_norm_matches_its_formula(make, rng):
    x, w = rng.normal(size=(2, 3, 5)), rng.normal(size=5)
    expected = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(host(F.rms_norm(make(x), make(w), eps=1e-5)), expected, rtol=1e-12)


def test_silu_and_swiglu_match_their_formulas(make, rng):
    a, u = rng.normal(size=(3, 4)) * 3, rng.normal(size=(3, 4))
    silu = a / (1 + np.exp(-a))
    np.testing.assert_allclose(host(F.silu(make(a))), silu, rtol=1e-12)
    np.testing.assert_allclose(host(F.swiglu(make(a), make(u))), silu * u, rtol=1e-12)


@pytest.mark.parametrize("offset", [0, 5])
def test_rope_matches_the_rotate_half_formula_at_an_offset(make, rng, offset):
    x = rng.normal(size=(2, 3, 4, 8))
    np.testing.assert_allclose(host(F.rope(make(x), offset=offset, theta=10000.0)),
                               np_rope(x, offset, 10000.0), rtol=1e-6, atol=1e-6)  # float32 angle tables


def test_rope_of_one_token_at_offset_equals_that_row_of_the_full_sequence(make, rng):
    x = rng.normal(size=(1, 2, 6, 4))
    full = host(F.rope(make(x), theta=100000.0))
    one = host(F.rope(make(x[:, :, 4:5]), offset=4, theta=100000.0))
    np.testing.assert_array_equal(one, full[:, :, 4:5])


def test_rope_keeps_the_norm_of_each_pair(make, rng):
    x = rng.normal(size=(1, 1, 5, 6))
    out = host(F.rope(make(x)))
    pair = lambda a: a[..., :3] ** 2 + a[..., 3:] ** 2  # noqa: E731
    np.testing.assert_allclose(pair(out), pair(x), rtol=1e-6)


# ---- float64 gradchecks (gradcheck draws a non-uniform, signed upstream gradient) --------
def test_rms_norm_gradients_match_finite_differences(make, rng):
    x = make(rng.normal(size=(2, 3, 4)), requires_grad=True)
    w = make(rng.normal(size=4), requires_grad=True)
    assert gradcheck(lambda a, b: F.rms_norm(a, b, eps=1e-5), x, w)
    assert gradcheck(lambda a: F.rms_norm(a, None, eps=1e-5), x)


def test_silu_gradients_match_finite_differences(make, rng):
    assert gradcheck(F.silu, make(rng.normal(size=(3, 4)) * 3, requires_grad=True))


def test_swiglu_gradients_match_finite_differences(make, rng):
    gate = make(rng.normal(size=(2, 5)) * 2, requires_grad=True)
    up = make(rng.normal(size=(2, 5)), requires_grad=True)
    assert gradcheck(F.swiglu, gate, up)


@pytest.mark.parametrize("offset", [0, 3])
def test_rope_gradients_match_finite_differences(make, rng, offset):
    x = make(rng.normal(size=(2, 2, 3, 4)), requires_grad=True)
    assert gradcheck(lambda t: F.rope(t, offset=offset, theta=500.0), x)


def test_frozen_inputs_get_no_gradient(make, rng):
    gate = make(rng.normal(size=(2, 3)), requires_grad=True)
    up = make(rng.normal(size=(2, 3)))
    F.swiglu(gate, up).sum().backward()
    assert gate.grad is not None and up.grad is None
    x, w = make(rng.normal(size=(2, 3))), make(rng.normal(size=3), requires_grad=True)
    F.rms_norm(x, w).sum().backward()
    assert w.grad is not None and x.grad is None


# ---- float32 stays float32 ---------------------------------------------------------------
@pytest.mark.parametrize("op", ["rms_norm", "silu", "swiglu", "rope"])
def test_float32_inputs_give_float32_outputs_and_gradients(make, rng, op):
    x = make(rng.normal(size=(1, 2, 3, 4)), requires_grad=True, dtype=np.float32)
    y = make(rng.normal(size=(1, 2, 3, 4)), requires_grad=True, dtype=np.float32)
    w = make(rng.normal(size=4), requires_grad=True, dtype=np.float32)
    out = {"rms_norm": lambda: F.rms_norm(x, w), "silu": lambda: F.silu(x),
           "swiglu": lambda: F.swiglu(x, y), "rope": lambda: F.rope(x, offset=2)}[op]()
    out.backward(np.ones(out.shape, dtype=np.float32) if out.xp is np else out.xp.ones(out.shape,
                                                                                        dtype=np.float32))
    assert out.dtype == np.float32 and x.grad.dtype == np.float32
    if op == "rms_norm":
        assert w.grad.dtype == np.float32


# ---- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, message", [
    (lambda: F.rms_norm(np.zeros((2, 3)), np.zeros(4)), ValueError, r"weight shape \(4,\) must be \(D,\)"),
    (lambda: F.rms_norm(np.zeros((2, 3)), None, eps=-1.0), ValueError, "eps must be a number >= 0"),
    (lambda: F.swiglu(np.zeros((2, 3)), np.zeros((2, 4))), ValueError, "gate .* and up .* same shape"),
    (lambda: F.rope(np.zeros((1, 1, 2, 3))), ValueError, "even head_dim"),
    (lambda: F.rope(np.zeros((2, 4))), ValueError, r"\(B, heads, T, head_dim\)"),
    (lambda: F.rope(np.zeros((1, 1, 2, 4)), offset=-1), ValueError, "offset must be a non-negative int"),
    (lambda: F.rope(np.zeros((1, 1, 2, 4)), offset=1.5), TypeError, "offset must be an int"),
    (lambda: F.rope(np.zeros((1, 1, 2, 4)), theta=0.0), ValueError, "theta must be a number > 0"),
    (lambda: F.silu(None), TypeError, "silu: x must be a Tensor"),
])
def test_bad_input_is_refused_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- PyTorch / transformers references (float64) -------------------------------------------
def test_rms_norm_matches_torch(rng):
    torch = pytest.importorskip("torch")
    compare(lambda x, w: F.rms_norm(x, w, eps=1e-6),
             lambda x, w: torch.nn.functional.rms_norm(x, (5,), w, eps=1e-6),
             rng.normal(size=(2, 3, 5)), rng.normal(size=5))


def test_silu_and_swiglu_match_torch(rng):
    torch = pytest.importorskip("torch")
    compare(F.silu, torch.nn.functional.silu, rng.normal(size=(3, 4)) * 4)
    compare(F.swiglu, lambda a, b: torch.nn.functional.silu(a) * b,
             rng.normal(size=(3, 4)) * 4, rng.normal(size=(3, 4)))


@pytest.mark.parametrize("theta", [10000.0, 100000.0])
def test_rope_matches_transformers_apply_rotary_pos_emb(rng, theta):
    torch = pytest.importorskip("torch")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig
    config = LlamaConfig(hidden_size=32, num_attention_heads=2, rope_theta=theta)
    rotary = llama.LlamaRotaryEmbedding(config)
    positions = torch.arange(7, 7 + 5)[None]
    x = rng.normal(size=(1, 2, 5, 16))

    def theirs(t):
        cos, sin = rotary(t, positions)
        return llama.apply_rotary_pos_emb(t, t, cos, sin)[0]
    # Both build float32 angle tables; torch's float32 pow and cos differ from the correctly
    # rounded ones by an ulp now and then, so the float64 results agree to float32 rounding.
    compare(lambda t: F.rope(t, offset=7, theta=theta), theirs, x, rtol=1e-6, atol=1e-6)


def test_rope_tables_match_transformers_to_float32_rounding():
    """Angles are float32 products position * inv_freq in both; torch's float32 pow is off by an ulp
    for some frequencies, so the angles drift apart by up to position * 6e-8 radians."""
    torch = pytest.importorskip("torch")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig
    rotary = llama.LlamaRotaryEmbedding(LlamaConfig(hidden_size=576, num_attention_heads=9, rope_theta=1e5))
    n = 8192
    cos_t, sin_t = (a.numpy()[0] for a in rotary(torch.zeros(1), torch.arange(n)[None]))
    cos, sin = rope_tables(n, 64, 1e5, np.float32, np)
    bound = 1e-6 + 1.2e-7 * np.arange(n)[:, None]  # (n, 1)
    assert (np.abs(cos - cos_t) <= bound).all() and (np.abs(sin - sin_t) <= bound).all()
