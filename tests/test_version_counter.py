"""Stale gradients: a tensor changed between an op and backward() makes backward() raise.

Before the version counter, each case below returned a wrong gradient without a word: the
backward functions read their inputs' arrays when backward() runs, so they saw the new values.
"""
import numpy as np
import pytest

from tinylora import Tensor
from tinylora.nn import Parameter
from tinylora.optim import SGD, AdamW


def test_assigning_data_between_forward_and_backward_raises_naming_op_shape_and_versions(make):
    w = make([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()  # d loss / dw = 2w = [2, 4] for the w the forward pass used
    w.data = w.data * 10  # before: backward() then gave 2 * 10w = [20, 40]
    with pytest.raises(RuntimeError, match=r"input 0 of __mul__, a tensor of shape \(2,\).*at version 1, "
                                           r"but __mul__ saved version 0"):
        loss.backward()
    assert w.grad is None  # checked before any gradient was computed


def test_every_in_place_method_adds_one_to_the_version(make):
    t = make([1.0, 2.0])
    t.add_(1.0)
    t.mul_(2.0)
    t.copy_(make([0.5, 0.5]))
    t.zero_()
    t.data = t.data + 1
    assert t.version == 5
    np.testing.assert_array_equal(np.asarray(t.numpy()), [1.0, 1.0])


def test_an_in_place_method_on_an_input_after_the_op_raises_in_backward(make):
    x = make([3.0], requires_grad=True)
    c = make([2.0])
    y = (x * c).sum()
    c.add_(1.0)  # before: dy/dx came out as 3 instead of 2
    with pytest.raises(RuntimeError, match="input 1 of __mul__"):
        y.backward()


def test_changing_an_ops_output_in_place_raises(make):
    x = make([0.0, 1.0], requires_grad=True)
    e = x.exp()  # exp's backward multiplies by its own output
    e.mul_(0.0)  # before: dx came out as 0
    with pytest.raises(RuntimeError, match="its output of exp"):
        e.sum().backward()


def test_a_raw_write_into_data_while_a_graph_saved_it_raises_at_once_and_leaves_it_unchanged():
    w = Tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    with pytest.raises(ValueError, match="read-only"):
        w.data[0] = 5.0  # before: accepted, and backward() then gave [10, 4]
    loss.backward()
    np.testing.assert_array_equal(w.grad, [2.0, 4.0])


def test_raw_writes_work_again_after_backward_and_after_the_graph_is_dropped():
    w = Tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    w.data[0] = 5.0  # the graph was released by backward()
    loss = (w * 3).sum()
    del loss  # dropped without backward()
    w.data[1] = 7.0
    np.testing.assert_array_equal(w.data, [5.0, 7.0])


def test_retain_graph_keeps_the_inputs_read_only_until_the_graph_is_gone():
    w = Tensor([1.0], requires_grad=True)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(ValueError, match="read-only"):
        w.data[0] = 2.0
    del loss
    w.data[0] = 2.0
    assert w.data[0] == 2.0


def test_an_optimizer_step_between_forward_and_backward_raises_only_in_the_stale_backward():
    w = Parameter(np.array([1.0, -1.0], dtype=np.float32))
    opt = SGD([w], lr=0.1)
    stale = (w * w).sum()
    w.grad = np.array([1.0, 1.0], dtype=np.float32)
    opt.step()  # no error: the step itself is allowed, as in PyTorch
    np.testing.assert_allclose(w.data, [0.9, -1.1])
    with pytest.raises(RuntimeError, match="changed in place"):
        stale.backward()


def test_a_training_loop_with_adamw_never_trips_the_check():
    w = Parameter(np.array([3.0, -2.0], dtype=np.float32))
    opt = AdamW([w], lr=0.5, weight_decay=0.0)
    for _ in range(3):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
    assert w.version == 3  # one add_ per step (no weight decay)


def test_no_grad_saves_nothing_so_writes_stay_allowed():
    from tinylora import no_grad
    w = Tensor([1.0], requires_grad=True)
    with no_grad():
        y = w * 2
    w.data[0] = 4.0
    assert y.data[0] == 2.0 and w.version == 0


def test_a_float32_leaf_gets_a_float32_gradient_from_a_float64_path():
    x32 = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y64 = Tensor(np.array([3.0, 4.0], dtype=np.float64))
    (x32 * y64).sum().backward()  # before: x32.grad was float64
    assert x32.grad.dtype == np.float32
    np.testing.assert_array_equal(x32.grad, [3.0, 4.0])


@pytest.mark.parametrize("grad, error, match", [
    (np.ones(2, dtype=np.float64), TypeError, "dtype float32, got float64"),
    (np.ones(3, dtype=np.float32), ValueError, r"shape \(2,\), got \(3,\)"),
    ([1.0, 1.0], TypeError, "None or an array"),
])
def test_assigning_a_wrong_grad_is_refused_as_in_pytorch(grad, error, match):
    w = Parameter(np.zeros(2, dtype=np.float32))
    with pytest.raises(error, match=match):
        w.grad = grad  # before: a float64 or wrongly shaped .grad was stored as given
    assert w.grad is None
