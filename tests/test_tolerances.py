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
    w = data.draw(tensors(shape=(m, n), dtype=dtype))  # (out, in), as F.linear's
    b = data.draw(tensors(shape=(m,), dtype=dtype))
    expected = tol.linear(tol.exact(x), tol.exact(w), tol.exact(b))
    tol.assert_within_bound(torch.matmul(x, w.mT) + b, expected)  # x @ w.T rounded before the bias is added


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_centering_bound_holds_for_torch_mean(dtype, data):
    x = data.draw(tensors(shape=st.lists(st.integers(0, 6), max_size=3).map(tuple), dtype=dtype))
    expected = tol.subtract(tol.exact(x), tol.mean(tol.exact(x)))
    tol.assert_within_bound(x - x.mean(), expected)


def test_a_constant_error_of_1e_3_in_float32_is_caught():
    x = torch.randn(4, 8)
    w = torch.randn(3, 8)
    expected = tol.relu(tol.linear(tol.exact(x), tol.exact(w)))
    tol.assert_within_bound(torch.relu(x @ w.T), expected)
    with pytest.raises(tol.ToleranceExceeded, match="outside the error bound"):
        tol.assert_within_bound(torch.relu(x @ w.T) + 1e-3, expected)
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


# -- where torch accumulates, and the sharpness cases ---------------------------

import dataclasses  # noqa: E402

import hypothesis  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from properties import LayerSpec, SpecError, check_layer  # noqa: E402
from properties.runner import GlobalState  # noqa: E402

SHARPNESS = settings(max_examples=100, derandomize=True, database=None, deadline=None, print_blob=False)


class LinearInBfloat16(nn.Module):
    """A float16 linear layer that secretly computes in bfloat16 (the mutant)."""

    def __init__(self, features, device=None, dtype=None):
        super().__init__()
        self.linear = nn.Linear(features, 3, device=device, dtype=dtype)

    def forward(self, x):
        w, b = self.linear.weight, self.linear.bias
        return F.linear(x.bfloat16(), w.bfloat16(), b.bfloat16()).to(x.dtype)


class PlainLinear(LinearInBfloat16):
    def forward(self, x):
        return self.linear(x)


def _linear_spec(module, features):
    return LayerSpec(
        name=module.__name__,
        module=module,
        constructor_args={"features": features},
        input_event_shape=(features,),
        output_event_shape=(3,),
        dtypes=(torch.float16,),
        per_sample=True,
        reference=lambda m, x: tol.linear(x, tol.exact(m.linear.weight), tol.exact(m.linear.bias)),
    )


@pytest.mark.parametrize("features", [8, 32])
def test_a_float16_linear_computed_in_bfloat16_is_caught(features):
    check_layer(_linear_spec(PlainLinear, features), ["matches_reference"], settings=SHARPNESS)
    with pytest.raises(AssertionError, match="matches_reference failed on LinearInBfloat16"):
        check_layer(_linear_spec(LinearInBfloat16, features), ["matches_reference"], settings=SHARPNESS)


class Centered(nn.Module):
    def forward(self, x):
        return x - x.mean()


class CenteredOffByHalf(nn.Module):
    def forward(self, x):
        return x - x.mean() + 0.5


def _centering_spec(module, accumulation="torch"):
    return LayerSpec(
        name=module.__name__,
        module=module,
        factory_kwargs=False,
        input_event_shape=(256,),
        batch_dims=(0, 0),
        dtypes=(torch.bfloat16,),
        reference=lambda m, x: tol.subtract(x, tol.mean(x)),
        accumulation=accumulation,
    )


def test_a_bfloat16_centering_off_by_half_over_256_elements_is_caught():
    check_layer(_centering_spec(Centered), ["matches_reference"], settings=SHARPNESS)
    with pytest.raises(AssertionError, match="matches_reference failed on CenteredOffByHalf"):
        check_layer(_centering_spec(CenteredOffByHalf), ["matches_reference"], settings=SHARPNESS)


class CenteredSummingInBfloat16(nn.Module):
    """Sums in bfloat16 one element at a time: deliberately low-precision accumulation."""

    def forward(self, x):
        total = torch.zeros((), dtype=x.dtype)
        for value in x.reshape(-1):
            total = total + value
        return x - total / x.numel()


def _sequential_spec(accumulation):
    return dataclasses.replace(
        _centering_spec(CenteredSummingInBfloat16, accumulation), input_event_shape=(64,), name=f"sequential_{accumulation}"
    )


def test_a_spec_declares_a_looser_accumulation():
    # Judged as if it accumulated in float32, the layer fails; declared, it passes.
    with pytest.raises(AssertionError, match="matches_reference failed on sequential_torch"):
        check_layer(_sequential_spec("torch"), ["matches_reference"], settings=SHARPNESS)
    check_layer(_sequential_spec("working"), ["matches_reference"], settings=SHARPNESS)
    with pytest.raises(SpecError, match="accumulation"):
        _sequential_spec("bfloat16")


def test_low_precision_bounds_use_float32_accumulation_and_one_rounding():
    x = tol.exact(torch.ones(300, dtype=torch.bfloat16))
    assert tol.mean(x).error.item() < 4 * tol.unit_roundoff(torch.bfloat16)
    with tol.accumulating("working"):
        assert math.isinf(tol.mean(x).error.item())  # gamma(300) in bfloat16 is infinite
    with pytest.raises(ValueError, match="working"):
        with tol.accumulating("float8"):
            pass


def test_an_infinite_bound_is_an_event_never_a_silent_claim(monkeypatch):
    seen = []
    monkeypatch.setattr(hypothesis, "event", lambda text, payload="": seen.append(text))

    @settings(max_examples=1, database=None)
    @given(st.just(None))
    def run(_):
        with tol.accumulating("working"):
            expected = tol.mean(tol.exact(torch.ones(300, dtype=torch.bfloat16)))
        tol.assert_within_bound(torch.tensor(5.0), expected)  # no claim there

    run()
    assert "bound: infinite in bfloat16 (n=300)" in seen
    assert any(text.startswith("bound: infinite for some elements") for text in seen)


def test_the_float64_reference_rounding_is_part_of_the_bound():
    x = torch.tensor([1e16, 1.0, -1e16], dtype=torch.float64)
    bound = tol.sum(tol.exact(x)).error.item()
    one_side = tol.gamma(2, torch.float64) * 2e16
    assert bound >= 2 * one_side  # the layer's rounding and the reference's own
    tol.assert_within_bound(x.sum(), tol.sum(tol.exact(x)))


def _tf32(t):
    """Round float32 to TF32's 10-bit mantissa, as tensor cores do."""
    mantissa, exponent = torch.frexp(t.double())
    return torch.ldexp(torch.round(mantissa * 2**11) / 2**11, exponent)


def _on_cuda(b):
    return dataclasses.replace(b, device="cuda")


def test_tf32_products_on_cuda_get_the_tf32_bound():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 64, generator=g), torch.randn(64, 5, generator=g)
    tf32_result = (_tf32(x) @ _tf32(w)).float()
    before = GlobalState.capture()
    try:
        torch.set_float32_matmul_precision("highest")
        strict = tol.matmul(_on_cuda(tol.exact(x)), _on_cuda(tol.exact(w)))
        with pytest.raises(tol.ToleranceExceeded):
            tol.assert_within_bound(tf32_result, strict)
        torch.set_float32_matmul_precision("high")
        loose = tol.matmul(_on_cuda(tol.exact(x)), _on_cuda(tol.exact(w)))
        tol.assert_within_bound(tf32_result, loose)
        assert bool((tol.matmul(tol.exact(x), tol.exact(w)).error == strict.error).all())  # CPU: never TF32
        xc, wc = torch.randn(2, 4, 16, generator=g), torch.randn(3, 4, 5, generator=g)
        tf32_conv = F.conv1d(_tf32(xc), _tf32(wc)).float()
        torch.backends.cudnn.allow_tf32 = False
        with pytest.raises(tol.ToleranceExceeded):
            tol.assert_within_bound(tf32_conv, tol.conv1d(_on_cuda(tol.exact(xc)), _on_cuda(tol.exact(wc))))
        torch.backends.cudnn.allow_tf32 = True
        tol.assert_within_bound(tf32_conv, tol.conv1d(_on_cuda(tol.exact(xc)), _on_cuda(tol.exact(wc))))
    finally:
        changed = before.restore_and_diff()
    assert "float32 matmul precision" in changed and torch.get_float32_matmul_precision() == "highest"


@pytest.mark.parametrize("product", ["conv2d", "linear", "matmul"])
def test_a_product_may_read_a_subnormal_operand_as_zero_but_not_a_normal_one(product):
    # Found by the gallery's soak: torch's CPU bfloat16 conv2d (oneDNN) returned 0
    # for 9.3e-39 * 4.6e17 (a bfloat16 subnormal read as zero; exact 4.3e-21).
    def bound(x, w):
        return {
            "conv2d": lambda: tol.conv2d(tol.exact(x.reshape(1, 1, 1, 1)), tol.exact(w.reshape(1, 1, 1, 1))),
            "linear": lambda: tol.linear(tol.exact(x), tol.exact(w)),
            "matmul": lambda: tol.matmul(tol.exact(x), tol.exact(w)),
        }[product]()

    def zero(x, w):
        return torch.zeros(bound(x, w).shape, dtype=x.dtype)

    w = torch.tensor([[4.6e17]], dtype=torch.bfloat16)
    subnormal = torch.tensor([[9.3e-39]], dtype=torch.bfloat16)
    torch_conv = F.conv2d(subnormal.reshape(1, 1, 1, 1), w.reshape(1, 1, 1, 1))
    for flushed in (zero(subnormal, w), torch_conv.reshape(bound(subnormal, w).shape)):
        tol.assert_within_bound(flushed, bound(subnormal, w))
    normal = torch.tensor([[2.4e-38]], dtype=torch.bfloat16)
    with pytest.raises(tol.ToleranceExceeded):
        tol.assert_within_bound(zero(normal, w), bound(normal, w))
    # float16's subnormals are normal in float32, where it accumulates: reading one as zero is a bug.
    half_subnormal, half_w = torch.tensor([[3e-5]], dtype=torch.float16), torch.tensor([[1000.0]], dtype=torch.float16)
    with pytest.raises(tol.ToleranceExceeded):
        tol.assert_within_bound(zero(half_subnormal, half_w), bound(half_subnormal, half_w))


@pytest.mark.parametrize(
    "call, operation",
    [
        (lambda b: torch.relu(b), "tol.relu"),
        (lambda b: torch.exp(b), "tol.exp"),
        (lambda b: F.linear(b, torch.ones(2, 2)), "tol.linear"),
        (lambda b: torch.nn.functional.softmax(b, dim=-1), "tol.softmax"),
        (lambda b: torch.mul(b, 2), "tol.multiply"),
        (lambda b: torch.ones(2, 2).add(b), "tol.add"),
    ],
)
def test_a_torch_function_on_a_bounded_names_the_tolerances_operation(call, operation):
    b = tol.exact(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    with pytest.raises(TypeError, match=rf"was called on a tolerances\.Bounded.*use {operation} "):
        call(b)


def test_a_torch_function_without_a_tolerances_operation_points_at_map_and_operators_still_work():
    b = tol.exact(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    with pytest.raises(TypeError, match=r"torch\.transpose was called on a tolerances\.Bounded.* with \.map"):
        torch.transpose(b, 0, 1)
    t = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # A tensor on the left: torch's operator gives way to Bounded's reflected one.
    for got, want in [(t + b, t + b.value), (t - b, t - b.value), (t * b, t * b.value), (t / b, t / b.value),
                      (b + t, b.value + t), (2 * b, 2 * b.value), (b ** 2, b.value**2), (b.map(torch.t), b.value.T)]:
        assert isinstance(got, tol.Bounded) and torch.equal(got.value, want.double())
    # Inside the operations, torch works on the plain value and error tensors.
    assert torch.equal(tol.relu(b).value, torch.relu(b.value))


def test_a_reference_calling_torch_on_a_bounded_is_a_spec_error_naming_the_operation():
    from layers.specs import my_linear_spec
    from properties.runner import spec_problem

    spec = dataclasses.replace(my_linear_spec, name="TorchInReference", reference=lambda module, x: torch.relu(x))
    problem = spec_problem(spec)
    assert isinstance(problem, SpecError), problem
    assert "field 'reference'" in str(problem) and "torch.relu was called on a tolerances.Bounded" in str(problem)
    assert "use tol.relu" in str(problem)
