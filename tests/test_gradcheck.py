"""gradcheck itself: it must catch a wrong backward and say exactly where it is wrong."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tinylora import Tensor, gradcheck


def square_with_one_wrong_element(t):
    """x**2 whose backward is right everywhere except element (1, 2), which is off by exactly 1."""
    def backward(g):
        grad = g * 2 * t.data
        grad[1, 2] += 1.0
        return (grad,)
    return Tensor.from_op(t.data ** 2, (t,), backward)


def test_gradcheck_passes_a_correct_backward(make, rng):
    assert gradcheck(lambda t: t ** 2, make(rng.standard_normal((2, 3)), requires_grad=True))


def test_gradcheck_names_the_input_element_and_both_values_of_a_wrong_backward(make, rng):
    x = make(rng.standard_normal((2, 3)), requires_grad=True)
    with pytest.raises(AssertionError) as failure:
        gradcheck(square_with_one_wrong_element, x)
    message = str(failure.value)
    assert "input 0" in message and "element (1, 2)" in message
    analytic, numeric = map(float, re.search(r"analytic (\S+) vs numeric (\S+)", message).groups())
    assert analytic - numeric == pytest.approx(1.0, abs=1e-4)


def test_gradcheck_reports_which_of_several_inputs_is_wrong(make, rng):
    a, b = (make(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(2))
    with pytest.raises(AssertionError, match="input 1"):
        gradcheck(lambda a, b: a * square_with_one_wrong_element(b), a, b)


def test_gradcheck_refuses_float32_inputs(make):
    with pytest.raises(TypeError, match="float32.*float64"):
        gradcheck(lambda t: t * 2, make([1.0, 2.0], requires_grad=True, dtype=np.float32))


def test_gradcheck_needs_an_input_that_requires_grad(make):
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(lambda t: t * 2, make([1.0, 2.0]))


def test_gradcheck_needs_fn_to_return_a_tensor(make):
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda t: t.data * 2, make([1.0, 2.0], requires_grad=True))
