"""Error bounds: never fail a correct computation, yet catch a 1e-3 error in float32.

The correct computations are torch's own (matmul, mean); the bounds are
checked against them on Hypothesis-drawn inputs of every regime, huge values
and cancellations included.
"""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from properties import tolerances as tol
from properties.spec import FLOAT_DTYPES
from properties.strategies import tensors


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_linear_bound_holds_for_torch_matmul(dtype, data):
    n, m = data.draw(st.integers(1, 16)), data.draw(st.integers(1, 4))
    x = data.draw(tensors(shape=(3, n), dtype=dtype))
    w = data.draw(tensors(shape=(n, m), dtype=dtype))
    b = data.draw(tensors(shape=(m,), dtype=dtype))
    expected = tol.linear(tol.exact(x), tol.exact(w), tol.exact(b))
    tol.assert_within_bound(torch.matmul(x, w) + b, expected)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_centering_bound_holds_for_torch_mean(dtype, data):
    x = data.draw(tensors(shape=st.lists(st.integers(0, 6), max_size=3).map(tuple), dtype=dtype))
    expected = tol.subtract(tol.exact(x), tol.mean(tol.exact(x)))
    tol.assert_within_bound(x - x.mean(), expected)


def test_a_constant_error_of_1e_3_in_float32_is_caught():
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    expected = tol.relu(tol.linear(tol.exact(x), tol.exact(w)))
    tol.assert_within_bound(torch.relu(x @ w), expected)
    with pytest.raises(tol.ToleranceExceeded, match="outside the error bound"):
        tol.assert_within_bound(torch.relu(x @ w) + 1e-3, expected)
    centered = tol.subtract(tol.exact(x), tol.mean(tol.exact(x)))
    with pytest.raises(tol.ToleranceExceeded):
        tol.assert_within_bound(x - x.mean() + 1e-3, centered)


def test_bounds_scale_with_magnitude_and_length():
    small = tol.mean(tol.exact(torch.ones(10)))
    large = tol.mean(tol.exact(torch.full((10,), 1e6)))
    longer = tol.mean(tol.exact(torch.ones(1000)))
    assert large.error > 1e5 * small.error
    assert longer.error > small.error
    assert tol.gamma(10, torch.float16) > tol.gamma(10, torch.float32) > tol.gamma(10, torch.float64)


def test_overflowing_intermediates_make_no_claim_but_finite_results_must_be_finite():
    huge = torch.full((2,), torch.finfo(torch.float32).max)
    centered = tol.subtract(tol.exact(huge), tol.mean(tol.exact(huge)))
    assert not centered.representable.any()  # the sum overflows float32: inf/NaN are legitimate
    tol.assert_within_bound(huge - huge.mean(), centered)
    ordinary = tol.exact(torch.ones(3))
    with pytest.raises(tol.ToleranceExceeded):
        tol.assert_within_bound(torch.tensor([1.0, math.inf, 1.0]), ordinary)
    with pytest.raises(tol.ToleranceExceeded):
        tol.assert_within_bound(torch.tensor([1.0, math.nan, 1.0]), ordinary)


def test_the_mean_of_an_empty_tensor_is_nan():
    empty = torch.empty(0, 3)
    expected = tol.mean(tol.exact(empty))
    assert math.isnan(expected.value)
    tol.assert_within_bound(empty.mean(), expected)
    with pytest.raises(tol.ToleranceExceeded):
        tol.assert_within_bound(torch.tensor(0.0), expected)


def test_shape_mismatch_is_reported():
    with pytest.raises(tol.ToleranceExceeded, match="shape"):
        tol.assert_within_bound(torch.zeros(2, 3), tol.exact(torch.zeros(3, 2)))
