"""The autograd engine: every op's gradient, the graph's bookkeeping, dtypes and error messages.

Every test takes the ``make`` / ``xp`` / ``backend`` fixtures, so it runs on NumPy and on the strict
fake-CuPy backend (and on real CuPy where a GPU is present).
"""
from __future__ import annotations

import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

from tinylora import Tensor, asnumpy, gradcheck, no_grad
from tinylora import backend as backend_module

from .fake_cupy import FakeCupyArray, calls, fake_cupy

# ---- the op table: (op, input shapes and domains) -------------------------------------------
# Domains move inputs off the points where finite differences lie: "positive" for log and
# fractional powers, "away_from_zero" for divisors and relu's kink at 0.
ANY, POSITIVE, AWAY = "any", "positive", "away_from_zero"

OPS = [
    pytest.param(lambda a, b: a + b, [((3, 4), ANY), ((4,), ANY)], id="tensor+tensor"),
    pytest.param(lambda a, b: a - b, [((2, 3, 4), ANY), ((3, 1), ANY)], id="tensor-tensor"),
    pytest.param(lambda a, b: a * b, [((3, 1), ANY), ((1, 4), ANY)], id="tensor*tensor"),
    pytest.param(lambda a, b: a / b, [((3, 4), ANY), ((4,), AWAY)], id="tensor/tensor"),
    pytest.param(lambda a: a + 2.5, [((3, 4), ANY)], id="tensor+scalar"),
    pytest.param(lambda a: 2.5 + a, [((3, 4), ANY)], id="scalar+tensor"),
    pytest.param(lambda a: a - 2.5, [((3, 4), ANY)], id="tensor-scalar"),
    pytest.param(lambda a: 2.5 - a, [((3, 4), ANY)], id="scalar-tensor"),
    pytest.param(lambda a: a * 3, [((3, 4), ANY)], id="tensor*scalar"),
    pytest.param(lambda a: 3 * a, [((3, 4), ANY)], id="scalar*tensor"),
    pytest.param(lambda a: a / 4.0, [((3, 4), ANY)], id="tensor/scalar"),
    pytest.param(lambda a: 4.0 / a, [((3, 4), AWAY)], id="scalar/tensor"),
    pytest.param(lambda a: a ** 3, [((3, 4), ANY)], id="tensor**3"),
    pytest.param(lambda a: a ** 0.5, [((3, 4), POSITIVE)], id="tensor**0.5"),
    pytest.param(lambda a: a ** -2, [((3, 4), AWAY)], id="tensor**-2"),
    pytest.param(lambda a: -a, [((3, 4), ANY)], id="-tensor"),
    pytest.param(lambda a, b: a @ b, [((3, 4), ANY), ((4, 5), ANY)], id="matmul-2d"),
    pytest.param(lambda a, b: a @ b, [((2, 3, 4), ANY), ((4, 5), ANY)], id="matmul-batched@2d"),
    pytest.param(lambda a, b: a @ b, [((3, 4), ANY), ((2, 4, 5), ANY)], id="matmul-2d@batched"),
    pytest.param(lambda a, b: a @ b, [((2, 1, 3, 4), ANY), ((5, 4, 2), ANY)], id="matmul-broadcast-batch"),
    pytest.param(lambda a: a.sum(), [((2, 3, 4), ANY)], id="sum-all"),
    pytest.param(lambda a: a.sum(axis=1), [((2, 3, 4), ANY)], id="sum-axis1"),
    pytest.param(lambda a: a.sum(axis=-1, keepdims=True), [((2, 3, 4), ANY)], id="sum-axis-1-keepdims"),
    pytest.param(lambda a: a.sum(axis=(0, 2)), [((2, 3, 4), ANY)], id="sum-axes02"),
    pytest.param(lambda a: a.mean(), [((2, 3, 4), ANY)], id="mean-all"),
    pytest.param(lambda a: a.mean(axis=(0, 2), keepdims=True), [((2, 3, 4), ANY)], id="mean-axes02-keepdims"),
    pytest.param(lambda a: a.max(), [((2, 3, 4), ANY)], id="max-all"),
    pytest.param(lambda a: a.max(axis=1), [((2, 3, 4), ANY)], id="max-axis1"),
    pytest.param(lambda a: a.max(axis=(0, 2), keepdims=True), [((2, 3, 4), ANY)], id="max-axes02-keepdims"),
    pytest.param(lambda a: a.exp(), [((3, 4), ANY)], id="exp"),
    pytest.param(lambda a: a.log(), [((3, 4), POSITIVE)], id="log"),
    pytest.param(lambda a: a.tanh(), [((3, 4), ANY)], id="tanh"),
    pytest.param(lambda a: a.relu(), [((3, 4), AWAY)], id="relu"),
    pytest.param(lambda a: a.sigmoid(), [((3, 4), ANY)], id="sigmoid"),
    pytest.param(lambda a: a.reshape(2, 6), [((3, 4), ANY)], id="reshape"),
    pytest.param(lambda a: a.reshape(-1), [((3, 4), ANY)], id="reshape-flatten"),
    pytest.param(lambda a: a.transpose(1, 0, 2), [((2, 3, 4), ANY)], id="transpose-axes"),
    pytest.param(lambda a: a.transpose(), [((2, 3, 4), ANY)], id="transpose-reverse"),
    pytest.param(lambda a: a.T, [((3, 4), ANY)], id="T"),
    pytest.param(lambda a: a[1], [((3, 4), ANY)], id="index-int"),
    pytest.param(lambda a: a[1, 2], [((3, 4), ANY)], id="index-int-pair"),
    pytest.param(lambda a: a[1:, ::2], [((3, 4), ANY)], id="index-slices"),
    pytest.param(lambda a: a[None, :, 1], [((3, 4), ANY)], id="index-None"),
    pytest.param(lambda a: a[..., 1], [((2, 3, 4), ANY)], id="index-Ellipsis"),
    pytest.param(lambda a: a[[0, 0, 2]], [((3, 4), ANY)], id="index-repeated-list"),
    pytest.param(lambda a: a[np.array([2, 0, 2, 2])], [((3, 4), ANY)], id="index-repeated-host-array"),
    pytest.param(lambda a: a[[0, 0, 1], [3, 3, 0]], [((3, 4), ANY)], id="index-repeated-pairs"),
]


def make_inputs(make, rng, specs, dtype=np.float64):
    """One requires-grad tensor per (shape, domain) spec."""
    tensors = []
    for shape, domain in specs:
        x = rng.standard_normal(shape)
        if domain == POSITIVE:
            x = np.abs(x) + 0.5
        elif domain == AWAY:
            x = np.sign(x) * (np.abs(x) + 0.5)
        tensors.append(make(x, requires_grad=True, dtype=dtype))
    return tensors


# ---- 1. every op's gradient ----------------------------------------------------------------
@pytest.mark.parametrize("op, specs", OPS)
def test_op_gradient_matches_finite_differences(make, rng, op, specs):
    assert gradcheck(op, *make_inputs(make, rng, specs))


def test_broadcast_gradients_sum_over_the_broadcast_axes(make, rng):
    """(5,13,24,16) * (5,1,24,1): b's gradient sums u*a over the axes b was stretched along (1 and 3)."""
    a, b = rng.standard_normal((5, 13, 24, 16)), rng.standard_normal((5, 1, 24, 1))
    u = rng.standard_normal((5, 13, 24, 16))
    ta, tb = make(a, requires_grad=True), make(b, requires_grad=True)
    (ta * tb).backward(make(u))
    np.testing.assert_allclose(asnumpy(ta.grad), u * b)
    np.testing.assert_allclose(asnumpy(tb.grad), (u * a).sum(axis=(1, 3), keepdims=True))


def test_broadcast_gradients_when_both_inputs_are_stretched(make, rng):
    """(1,3,1,7,1) * (2,1,5,1,8) -> (2,3,5,7,8): each input sums over its own size-1 axes."""
    a, b = rng.standard_normal((1, 3, 1, 7, 1)), rng.standard_normal((2, 1, 5, 1, 8))
    u = rng.standard_normal((2, 3, 5, 7, 8))
    ta, tb = make(a, requires_grad=True), make(b, requires_grad=True)
    (ta * tb).backward(make(u))
    np.testing.assert_allclose(asnumpy(ta.grad), (u * b).sum(axis=(0, 2, 4), keepdims=True))
    np.testing.assert_allclose(asnumpy(tb.grad), (u * a).sum(axis=(1, 3), keepdims=True))


# ---- 1b. properties over random shapes ------------------------------------------------------
PROPERTY = settings(max_examples=10, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
BINARY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


@PROPERTY
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**16))
def test_binary_op_gradients_hold_for_any_broadcastable_shapes(make, shapes, op, seed):
    specs = [(shapes.input_shapes[0], ANY), (shapes.input_shapes[1], AWAY)]
    assert gradcheck(BINARY[op], *make_inputs(make, np.random.default_rng(seed), specs))


@st.composite
def shape_and_axis(draw):
    """A small shape and an axis argument for it: None, one axis (maybe negative), or a tuple."""
    shape = draw(array_shapes(min_dims=1, max_dims=3, max_side=3))
    one_axis = st.integers(-len(shape), len(shape) - 1)
    some_axes = st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)
    return shape, draw(st.none() | one_axis | some_axes)


@PROPERTY
@given(shape_axis=shape_and_axis(), keepdims=st.booleans(), name=st.sampled_from(["sum", "mean", "max"]),
       seed=st.integers(0, 2**16))
def test_reduction_gradients_hold_for_any_axis_and_keepdims(make, shape_axis, keepdims, name, seed):
    shape, axis = shape_axis
    (x,) = make_inputs(make, np.random.default_rng(seed), [(shape, ANY)])
    out = getattr(x, name)(axis=axis, keepdims=keepdims)
    assert out.shape == getattr(np, name)(np.zeros(shape), axis=axis, keepdims=keepdims).shape
    assert gradcheck(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), x)


# ---- 2. the graph ----------------------------------------------------------------------------
def test_a_node_used_twice_gets_both_contributions(make):
    x = make([1.0, -2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(asnumpy(x.grad), [2.0, -4.0, 6.0])  # d(x^2)/dx = 2x


def test_diamond_graph_adds_gradients_from_both_paths(make):
    """a = 2x feeds both b = a + 1 and c = 3a; d = b * c = (2x + 1)(6x), so dd/dx = 24x + 6."""
    x = make([0.5, 2.0], requires_grad=True)
    a = x * 2
    d = (a + 1) * (a * 3)
    d.sum().backward()
    np.testing.assert_allclose(asnumpy(x.grad), [18.0, 54.0])


def test_two_backward_calls_accumulate_into_grad(make):
    x = make([1.0, 2.0], requires_grad=True)
    loss = (x * 3).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(asnumpy(x.grad), [6.0, 6.0])  # 3 + 3: grads add up, as in PyTorch


def test_backward_through_a_released_graph_raises(make):
    x = make([1.0, 2.0], requires_grad=True)
    loss = (x * 3).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        loss.backward()


def test_backward_releases_the_graph(make):
    x = make([1.0, 2.0], requires_grad=True)
    hidden = x * 2
    loss = hidden.sum()
    loss.backward()
    assert loss._parents == () and hidden._parents == ()


def test_retain_graph_keeps_the_graph(make):
    x = make([1.0, 2.0], requires_grad=True)
    hidden = x * 2
    loss = hidden.sum()
    loss.backward(retain_graph=True)
    assert loss._parents == (hidden,) and hidden._parents[0] is x


@pytest.mark.parametrize("backend", ["fakecupy"], indirect=True)
def test_a_frozen_weight_gets_no_gradient_and_costs_no_matmul(make):
    """Backward of x @ W with W frozen computes only dx = g @ W.T: one matmul, not two."""
    x = make(np.ones((2, 3)), requires_grad=True)
    w = make(np.ones((3, 4)))
    out = x @ w
    calls.clear()
    out.sum().backward()
    assert calls["matmul"] == 1
    assert w.grad is None and x.grad is not None


def test_grad_of_a_tensor_that_does_not_require_grad_stays_none(make):
    x, c = make([1.0, 2.0], requires_grad=True), make([3.0, 4.0])
    (x * c).sum().backward()
    assert c.grad is None


def test_a_100000_op_chain_backpropagates_without_recursion(make):
    x = make([0.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.backward()
    assert y.item() == 100_000 and x.grad.item() == 1.0


# ---- 3. no_grad ------------------------------------------------------------------------------
def test_no_grad_records_no_graph(make):
    x = make([1.0, 2.0], requires_grad=True)
    with no_grad():
        y = (x * 2).exp()
    assert not y.requires_grad and y._parents == () and y._backward is None


def test_no_grad_outputs_hold_no_reference_to_their_inputs(make):
    x = make([1.0, 2.0], requires_grad=True)
    with no_grad():
        y = (x * 2).exp()
    alive = weakref.ref(x)
    del x
    assert alive() is None and y.shape == (2,)


def test_ops_on_tensors_without_requires_grad_record_no_graph(make):
    y = make([1.0, 2.0]) * 2
    assert not y.requires_grad and y._parents == ()


# ---- 4. dtypes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op, specs", OPS)
def test_float32_stays_float32_forward_and_backward(make, rng, op, specs):
    inputs = make_inputs(make, rng, specs, dtype=np.float32)
    out = op(*inputs)
    out.sum().backward()
    assert out.dtype == np.float32
    assert [t.grad.dtype for t in inputs] == [np.float32] * len(inputs)


def test_backward_casts_the_upstream_gradient_to_the_tensor_dtype(make):
    x = make([1.0, 2.0], requires_grad=True, dtype=np.float32)
    (x * 2).backward(make([1.0, 1.0], dtype=np.float64))
    assert x.grad.dtype == np.float32


def test_results_hold_arrays_even_when_numpy_would_return_a_scalar(make, xp):
    x = make([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert all(isinstance(t.data, xp.ndarray) for t in (x.sum(), x[1, 0], x.max(), x.sum() * 2))


# ---- 5. devices --------------------------------------------------------------------------------
def test_to_cuda_without_cupy_names_the_install_command():
    if backend_module._cupy is not None:
        pytest.skip("real CuPy is installed")
    with pytest.raises(RuntimeError, match=r'pip install "tinylora\[gpu\]"'):
        Tensor([1.0]).to("cuda")


@pytest.mark.parametrize("backend", ["fakecupy"], indirect=True)
def test_to_moves_a_tensor_to_the_device_and_back(backend):
    x = Tensor([1.0, 2.0], requires_grad=True)
    on_device = x.to("cuda")
    assert (isinstance(on_device.data, FakeCupyArray) and on_device.device == "cuda"
            and on_device.requires_grad)
    np.testing.assert_array_equal(on_device.to("cpu").numpy(), [1.0, 2.0])


@pytest.mark.parametrize("backend", ["fakecupy"], indirect=True)
def test_mixing_cpu_and_cuda_tensors_raises(backend):
    on_cpu, on_device = Tensor([1.0, 2.0]), Tensor(fake_cupy.asarray([1.0, 2.0]))
    with pytest.raises(ValueError, match="got cuda and cpu"):
        on_device + on_cpu
    with pytest.raises(ValueError, match="got cpu and cuda"):
        on_cpu * on_device


# ---- 6. clear errors ---------------------------------------------------------------------------
def test_matmul_shape_mismatch_names_both_shapes(make):
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(4, 5\)"):
        make(np.ones((2, 3))) @ make(np.ones((4, 5)))


def test_matmul_batch_dims_that_do_not_broadcast_raise(make):
    with pytest.raises(ValueError, match=r"batch dimensions do not broadcast: \(2, 3, 4\) @ \(5, 4, 1\)"):
        make(np.ones((2, 3, 4))) @ make(np.ones((5, 4, 1)))


def test_backward_on_a_non_scalar_without_grad_raises(make):
    with pytest.raises(ValueError, match=r"one-element tensor, got shape \(2,\)"):
        (make([1.0, 2.0], requires_grad=True) * 2).backward()


def test_backward_on_a_tensor_without_requires_grad_raises(make):
    with pytest.raises(ValueError, match="does not require grad"):
        make([1.0]).sum().backward()


def test_ragged_lists_are_refused():
    with pytest.raises(ValueError, match="rectangular"):
        Tensor([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("data", ["1.5", ["a", "b"]], ids=["string", "list-of-strings"])
def test_strings_are_refused(data):
    with pytest.raises(TypeError, match="numeric"):
        Tensor(data)


def test_requires_grad_on_an_integer_array_is_refused(make):
    with pytest.raises(TypeError, match="floating-point.*int64"):
        make([1, 2], requires_grad=True, dtype=np.int64)


def test_power_with_a_tensor_exponent_is_refused(make):
    with pytest.raises(TypeError, match="real scalar exponent"):
        make([1.0]) ** make([2.0])
