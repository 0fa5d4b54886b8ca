"""The variants' defining properties: rsLoRA's scaling, DoRA's magnitude and constant norm,
PiSSA's SVD start, LoRA+'s learning rate for B."""
import numpy as np
import pytest

from tinylora import gradcheck, lora
from tinylora.gpt import GPT, GPTConfig
from tinylora.lora import LoraConfig, LoRALinear
from tinylora.nn import Linear
from tinylora.optim import AdamW
from tinylora.tensor import Tensor

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def ids(shape, vocab=11, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


def adapted_layer(config, in_f=5, out_f=4, dtype=np.float64):
    """A LoRALinear around a random (out_f, in_f) Linear, with ``config``'s adapter active."""
    layer = LoRALinear(Linear(in_f, out_f, rng=np.random.default_rng(0), dtype=dtype))
    layer.add_adapter("default", config, np.random.default_rng(1))
    layer.active_adapter = "default"
    return layer, layer.adapters["default"]


def numeric_gradient(f, array, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every element of ``array`` (in place)."""
    grad, flat = np.zeros(array.size), array.reshape(-1)
    for k in range(array.size):
        original = flat[k]
        flat[k] = original + eps
        plus = f()
        flat[k] = original - eps
        minus = f()
        flat[k] = original
        grad[k] = (plus - minus) / (2 * eps)
    return grad.reshape(array.shape)


# ---- rsLoRA ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("r, alpha, expected", [(4, 8, 4.0), (16, 8, 2.0), (64, 16, 2.0)])
def test_rslora_scaling_is_alpha_over_square_root_of_r(r, alpha, expected):
    assert LoraConfig(r=r, lora_alpha=alpha, use_rslora=True).scaling == expected
    assert LoraConfig(r=r, lora_alpha=alpha).scaling == alpha / r


def test_rslora_layer_adds_alpha_over_root_r_times_b_a():
    layer, a = adapted_layer(LoraConfig(r=4, lora_alpha=6, use_rslora=True, init_lora_weights=False))
    assert a.scaling == 3.0
    np.testing.assert_allclose(layer.delta_weight(), 3.0 * a.lora_B.data @ a.lora_A.data, rtol=1e-12)


# ---- DoRA -----------------------------------------------------------------------------------------
def test_dora_magnitude_starts_at_the_row_norms_of_w0():
    layer, a = adapted_layer(LoraConfig(r=2, use_dora=True))
    row_norms = np.linalg.norm(layer.base_layer.weight.data, axis=1)
    np.testing.assert_allclose(a.lora_magnitude.data, row_norms, rtol=1e-12)


def test_fresh_dora_adapter_leaves_the_output_unchanged():
    layer, _ = adapted_layer(LoraConfig(r=2, use_dora=True))
    x = np.random.default_rng(2).standard_normal((3, 5))
    np.testing.assert_allclose(layer(x).data, layer.base_layer(x).data, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_dora_merged_output_equals_unmerged_output(dtype, tol):
    config = LoraConfig(r=2, use_dora=True, init_lora_weights=False)
    model = lora.apply_lora(GPT(TINY, seed=0).to(dtype=dtype), config)
    for _, layer in lora.lora_layers(model):  # move m off the row norms, so the rescaling matters
        layer.adapters["default"].lora_magnitude.data *= 1.5
    x = ids((2, 8))
    unmerged, _ = model(x)
    merged, _ = lora.merge_lora(model)(x)
    assert np.abs(merged.data - unmerged.data).max() <= tol


def test_dora_unmerge_after_merge_restores_w0():
    config = LoraConfig(r=2, use_dora=True, init_lora_weights=False)
    model = lora.apply_lora(GPT(TINY, seed=0).to(dtype=np.float64), config)
    before = {n: p.numpy() for n, p in model.named_parameters()}
    lora.unmerge_lora(lora.merge_lora(model))
    for name, p in model.named_parameters():
        assert np.abs(p.data - before[name]).max() <= 1e-12, name


def test_dora_magnitude_passes_gradcheck_in_float64():
    layer, a = adapted_layer(LoraConfig(r=2, use_dora=True, init_lora_weights=False))
    x = Tensor(np.random.default_rng(2).standard_normal((3, 5)))
    assert gradcheck(lambda *_: layer(x), a.lora_magnitude)


def test_dora_gradients_of_a_and_b_match_finite_differences_with_the_norm_held_constant():
    """Reference: y = m / c · (W0 + s·B·A)·x + bias with c = ‖W0 + s·B·A‖_row frozen at the current A, B."""
    layer, a = adapted_layer(LoraConfig(r=2, use_dora=True, init_lora_weights=False))
    a.lora_magnitude.data *= 1.3
    W0, bias = layer.base_layer.weight.data, layer.base_layer.bias.data
    x = np.random.default_rng(2).standard_normal((3, 5))
    u = np.random.default_rng(3).standard_normal((3, 4))  # upstream gradient
    frozen_norm = np.linalg.norm(W0 + a.scaling * a.lora_B.data @ a.lora_A.data, axis=1)

    def reference():
        W = W0 + a.scaling * a.lora_B.data @ a.lora_A.data
        return float(((x @ W.T * (a.lora_magnitude.data / frozen_norm) + bias) * u).sum())

    layer(x).backward(u)
    for p in (a.lora_A, a.lora_B):
        np.testing.assert_allclose(p.grad, numeric_gradient(reference, p.data), atol=1e-7, rtol=1e-5)


def test_dora_gradient_differs_from_the_one_through_the_norm():
    """The same check with the norm recomputed at every point fails: no gradient flows through ‖·‖."""
    layer, a = adapted_layer(LoraConfig(r=2, use_dora=True, init_lora_weights=False))
    x = np.random.default_rng(2).standard_normal((3, 5))
    layer(x).sum().backward()
    through_norm = numeric_gradient(lambda: float(layer(x).data.sum()), a.lora_B.data)
    assert np.abs(a.lora_B.grad - through_norm).max() > 1e-3


# ---- PiSSA ----------------------------------------------------------------------------------------
def pissa_layer(dtype=np.float64):
    layer = LoRALinear(Linear(6, 5, rng=np.random.default_rng(0), dtype=dtype))
    W0 = layer.base_layer.weight.numpy()
    config = LoraConfig(r=2, lora_alpha=4, init_lora_weights="pissa")
    layer.add_adapter("default", config, np.random.default_rng(1))
    layer.active_adapter = "default"
    return layer, layer.adapters["default"], W0


def test_pissa_residual_plus_scaled_b_a_equals_w0():
    layer, a, W0 = pissa_layer(np.float32)
    W = layer.base_layer.weight.data + a.scaling * a.lora_B.data @ a.lora_A.data
    assert np.abs(W - W0).max() <= 1e-6


def test_pissa_output_is_unchanged_at_init():
    layer, _, W0 = pissa_layer(np.float32)
    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    assert np.abs(layer(x).data - (x @ W0.T + layer.base_layer.bias.data)).max() <= 1e-6


def test_pissa_a_and_b_span_the_top_r_singular_subspaces_of_w0():
    """Projectors onto row space of A and column space of B equal V_r·V_rᵀ and U_r·U_rᵀ."""
    _, a, W0 = pissa_layer()
    U, S, Vt = np.linalg.svd(W0)
    A, B = a.lora_A.data, a.lora_B.data
    np.testing.assert_allclose(np.linalg.pinv(A) @ A, Vt[:2].T @ Vt[:2], atol=1e-10)
    np.testing.assert_allclose(B @ np.linalg.pinv(B), U[:, :2] @ U[:, :2].T, atol=1e-10)
    np.testing.assert_allclose(np.linalg.svd(a.scaling * B @ A, compute_uv=False)[:2], S[:2], rtol=1e-10)


def test_pissa_unload_and_disable_give_w0_back():
    layer, _, W0 = pissa_layer(np.float32)
    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    layer.adapters["default"].lora_B.data += 0.5  # as if trained
    layer.disabled = True
    assert np.abs(layer(x).data - layer.base_layer.bias.data - x @ W0.T).max() <= 1e-6
    layer.disabled = False
    layer.delete_adapter("default")
    assert np.abs(layer.base_layer.weight.data - W0).max() <= 1e-6


def test_fresh_pissa_adapter_has_a_zero_delta_from_w0():
    layer, _, _ = pissa_layer()
    assert np.abs(layer.delta_weight()).max() <= 1e-12


def test_pissa_refuses_to_share_its_layers_with_another_adapter():
    model = lora.apply_lora(GPT(TINY), LoraConfig(r=2, init_lora_weights="pissa"))
    with pytest.raises(ValueError, match="PiSSA adapter rewrites the frozen weight"):
        lora.add_adapter(model, "second", LoraConfig(r=2))


# ---- LoRA+ ----------------------------------------------------------------------------------------
def test_lora_plus_gives_b_ratio_times_the_learning_rate():
    model = lora.apply_lora(GPT(TINY), LoraConfig(r=2))
    groups = lora.lora_plus_param_groups(model, lr=1e-3, ratio=16)
    b_matrices = [a.lora_B for _, layer in lora.lora_layers(model) for a in layer.adapters.values()]
    assert [g["lr"] for g in groups] == [1e-3, 16e-3]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in b_matrices]
    optimizer = AdamW(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 16e-3]


def test_lora_plus_refuses_a_non_positive_ratio():
    with pytest.raises(ValueError, match="ratio must be > 0, got lr=0.001, ratio=0"):
        lora.lora_plus_param_groups(lora.apply_lora(GPT(TINY), LoraConfig(r=2)), lr=1e-3, ratio=0)


def test_dora_and_pissa_together_are_refused():
    with pytest.raises(ValueError, match="use_dora=True cannot be combined with init_lora_weights='pissa'"):
        LoraConfig(use_dora=True, init_lora_weights="pissa")

