"""Every operation of ``properties.tolerances``: sound for torch's own kernels, sharp on typical inputs.

Soundness: torch's implementation of each operation, run in every dtype on
Hypothesis-drawn inputs of every regime (huge values, cancellation, special
values, zeros), stays within the operation's bound.  Sharpness: on typical
inputs the bound is a few units of the working dtype's roundoff, and a result
a few ulps beyond it is caught.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from properties import tolerances as tol
from properties.spec import FLOAT_DTYPES
from properties.strategies import available_devices, tensors

Ex = tol.exact
# A row of one element has no unbiased variance: torch warns and returns NaN (no claim).
pytestmark = pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")
# The ci profile's example count under CI=true (the loaded profile), fewer while editing.
EXAMPLES = settings.default.max_examples


@dataclasses.dataclass(frozen=True)
class Operation:
    """``run(x, y, dtype)`` -> (torch's result, the bound); ``x``, ``y``: drawn ``(rows, n)`` tensors."""

    name: str
    run: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, tol.Bounded]]
    # Sharpness: on standard normal inputs (rows of 64) the median bound is at
    # most this many working-dtype roundoffs of |result|: (float32, float16 and
    # bfloat16); float64 gets twice the float32 figure (the reference rounds as
    # much as the layer).  Reductions' float32 figures are Higham's worst-case
    # growth with n; the low-precision ones show float32 accumulation: about
    # one rounding to the working dtype, not gamma(n) of it.
    sharp: tuple[float, float] = (8.0, 2.0)
    positive: bool = False  # drawn inputs are made non-negative (log, sqrt)


def _w(n: int, like: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A deterministic parameter of size ``n`` in ``like``'s dtype."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64).to(like.dtype).to(like.device)


def _conv_weight(x: torch.Tensor, ndim: int, transposed: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    shape = {1: (2, 1, 3), 2: (2, 1, 2, 2), 3: (2, 1, 2, 2, 1)}[ndim]
    shape = (shape[1], shape[0], *shape[2:]) if transposed else shape  # (C_in, C_out, *kernel)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(x.dtype).to(x.device)


UNARY = {
    "exp": (torch.exp, tol.exp),
    "expm1": (torch.expm1, tol.expm1),
    "tanh": (torch.tanh, tol.tanh),
    "sigmoid": (torch.sigmoid, tol.sigmoid),
    "erf": (torch.erf, tol.erf),
    "gelu": (F.gelu, tol.gelu),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"), lambda b: tol.gelu(b, approximate="tanh")),
    "silu": (F.silu, tol.silu),
    "softplus": (F.softplus, tol.softplus),
    "softplus_beta2": (lambda t: F.softplus(t, beta=2.0, threshold=5.0), lambda b: tol.softplus(b, 2.0, 5.0)),
    "reciprocal": (torch.reciprocal, tol.reciprocal),
    "abs": (torch.abs, tol.abs),
    "relu": (torch.relu, tol.relu),
    "clamp": (lambda t: t.clamp(-1.5, 2.0), lambda b: tol.clamp(b, -1.5, 2.0)),
    "square": (lambda t: t**2, lambda b: b**2),
    "cube": (lambda t: t**3, lambda b: b**3),
    "inverse_square": (lambda t: t**-2, lambda b: b**-2),
}
SHARP_UNARY = {"sigmoid": (16.0, 2.0), "silu": (16.0, 2.0), "softplus": (16.0, 2.0), "softplus_beta2": (16.0, 2.0),
               "gelu": (64.0, 2.0), "gelu_tanh": (64.0, 2.0)}
POSITIVE_UNARY = {
    "log": (torch.log, tol.log),
    "log1p": (torch.log1p, tol.log1p),
    "sqrt": (torch.sqrt, tol.sqrt),
    "rsqrt": (torch.rsqrt, tol.rsqrt),
}


def _unary(name, torch_f, tol_f, positive=False, sharp=(8.0, 2.0)) -> Operation:
    return Operation(name, lambda x, y: (torch_f(x), tol_f(Ex(x))), sharp=sharp, positive=positive)


OPERATIONS = [
    *[_unary(n, *fs, sharp=SHARP_UNARY.get(n, (8.0, 2.0))) for n, fs in UNARY.items()],
    *[_unary(n, *fs, positive=True) for n, fs in POSITIVE_UNARY.items()],
    # The function of a computed (rounded) argument: the inherited error propagates.
    Operation("exp_of_product", lambda x, y: (torch.exp(x * y), tol.exp(Ex(x) * Ex(y))), sharp=(16.0, 3.0)),
    Operation("tanh_of_difference", lambda x, y: (torch.tanh(x - y), tol.tanh(Ex(x) - Ex(y))), sharp=(16.0, 3.0)),
    Operation("log_of_sum", lambda x, y: (torch.log(x + y), tol.log(Ex(x) + Ex(y))), sharp=(16.0, 3.0), positive=True),
    Operation("sqrt_of_sum_of_squares", lambda x, y: (torch.sqrt(x * x + y * y), tol.sqrt(Ex(x) ** 2 + Ex(y) ** 2)), sharp=(16.0, 3.0)),
    Operation("add", lambda x, y: (x + y, Ex(x) + Ex(y))),
    Operation("subtract", lambda x, y: (x - y, Ex(x) - Ex(y))),
    Operation("multiply", lambda x, y: (x * y, Ex(x) * Ex(y))),
    Operation("divide", lambda x, y: (x / y, Ex(x) / Ex(y))),
    Operation("where", lambda x, y: (torch.where(x > y, x, y * 2), tol.where(x > y, Ex(x), Ex(y) * 2))),
    Operation("sum_last", lambda x, y: (x.sum(-1), tol.sum(Ex(x), -1)), sharp=(300.0, 2.0)),
    Operation("sum_first_keepdim", lambda x, y: (x.sum(0, keepdim=True), tol.sum(Ex(x), 0, keepdim=True)), sharp=(8.0, 2.0)),
    Operation("mean_all", lambda x, y: (x.mean(), tol.mean(Ex(x))), sharp=(2500.0, 2.0)),
    Operation("mean_last", lambda x, y: (x.mean(-1, keepdim=True), tol.mean(Ex(x), -1, keepdim=True)), sharp=(300.0, 2.0)),
    Operation("var_biased", lambda x, y: (x.var(-1, correction=0), tol.var(Ex(x), -1, correction=0)), sharp=(400.0, 10.0)),
    Operation("var_unbiased", lambda x, y: (x.var(-1), tol.var(Ex(x), -1)), sharp=(400.0, 10.0)),
    Operation("std_unbiased", lambda x, y: (x.std(-1, keepdim=True), tol.std(Ex(x), -1, keepdim=True)), sharp=(200.0, 6.0)),
    Operation("std_biased_all", lambda x, y: (x.std(correction=0), tol.std(Ex(x), correction=0)), sharp=(500.0, 13.0)),
    Operation("amax", lambda x, y: (x.amax(-1), tol.amax(Ex(x), -1)), sharp=(0.0, 0.0)),
    Operation("amin", lambda x, y: (x.amin(-1, keepdim=True), tol.amin(Ex(x), -1, keepdim=True)), sharp=(0.0, 0.0)),
    Operation("logsumexp", lambda x, y: (torch.logsumexp(x, -1), tol.logsumexp(Ex(x), -1)), sharp=(20.0, 3.0)),
    Operation("softmax", lambda x, y: (torch.softmax(x, -1), tol.softmax(Ex(x), -1)), sharp=(80.0, 2.0)),
    Operation("log_softmax", lambda x, y: (torch.log_softmax(x, -1), tol.log_softmax(Ex(x), -1)), sharp=(20.0, 4.0)),
    Operation(
        "layer_norm",
        lambda x, y: (
            F.layer_norm(x, x.shape[-1:], _w(x.shape[-1], x), _w(x.shape[-1], x, 2)),
            tol.layer_norm(Ex(x), x.shape[-1:], Ex(_w(x.shape[-1], x)), Ex(_w(x.shape[-1], x, 2))),
        ),
        sharp=(160.0, 2.0),
    ),
    # Training: two samples of rows channels, statistics over 2n values each (one value raises).
    Operation(
        "batch_norm_training",
        lambda x, y: (
            F.batch_norm(torch.stack([x, y]), None, None, _w(x.shape[0], x), _w(x.shape[0], x, 2), training=True),
            tol.batch_norm(Ex(torch.stack([x, y])), weight=Ex(_w(x.shape[0], x)), bias=Ex(_w(x.shape[0], x, 2)), training=True),
        ),
        sharp=(240.0, 2.0),  # layer_norm's over twice the length
    ),
    Operation(
        "batch_norm_eval",
        lambda x, y: (
            F.batch_norm(x, _w(x.shape[1], x, 3), _w(x.shape[1], x, 4).abs(), _w(x.shape[1], x), None, training=False),
            tol.batch_norm(Ex(x), Ex(_w(x.shape[1], x, 3)), Ex(_w(x.shape[1], x, 4).abs()), Ex(_w(x.shape[1], x)), training=False),
        ),
        sharp=(10.0, 2.0),
    ),
    Operation(
        "instance_norm",
        lambda x, y: (
            F.instance_norm(torch.cat([x, y], -1)[None], weight=_w(x.shape[0], x), bias=_w(x.shape[0], x, 2)),
            tol.instance_norm(Ex(torch.cat([x, y], -1)[None]), weight=Ex(_w(x.shape[0], x)), bias=Ex(_w(x.shape[0], x, 2))),
        ),
        sharp=(240.0, 2.0),
    ),
    Operation(
        "rms_norm",
        lambda x, y: (
            F.rms_norm(x, x.shape[-1:], _w(x.shape[-1], x)),
            tol.rms_norm(Ex(x), x.shape[-1:], Ex(_w(x.shape[-1], x))),
        ),
        sharp=(48.0, 3.0),
    ),
    Operation("matmul", lambda x, y: (x @ y.mT, Ex(x) @ Ex(y).mT), sharp=(1400.0, 2.0)),
    Operation(
        "matmul_batched_broadcast",
        lambda x, y: (x[None, :, None, :] @ y.mT, tol.matmul(Ex(x)[None, :, None, :], Ex(y).mT)),
        sharp=(1400.0, 2.0),
    ),
    Operation("matmul_vector", lambda x, y: (x[0] @ y[0], Ex(x)[0] @ Ex(y)[0]), sharp=(400.0, 2.0)),
    Operation("einsum", lambda x, y: (torch.einsum("in,jn->ij", x, y), tol.einsum("in,jn->ij", Ex(x), Ex(y))), sharp=(1400.0, 2.0)),
    Operation(
        "linear",
        lambda x, y: (F.linear(x, y, y[:, 0]), tol.linear(Ex(x), Ex(y), Ex(y[:, 0]))),
        sharp=(900.0, 2.0),
    ),
    Operation(
        "linear_rounded_then_biased",
        lambda x, y: ((x @ y.mT) + y[:, 0], tol.linear(Ex(x), Ex(y), Ex(y[:, 0]))),
        sharp=(900.0, 2.0),
    ),
    Operation(
        "conv1d",
        lambda x, y: (
            F.conv1d(x[:, None], _conv_weight(x, 1), y[:2, 0] if y.shape[0] >= 2 else None, padding=1),
            tol.conv1d(Ex(x[:, None]), Ex(_conv_weight(x, 1)), Ex(y[:2, 0]) if y.shape[0] >= 2 else None, padding=1),
        ),
        sharp=(8.0, 2.0),
    ),
    Operation(
        "conv2d",
        lambda x, y: (
            F.conv2d(x[None, None], _conv_weight(x, 2), stride=(1, 2), padding=1),
            tol.conv2d(Ex(x[None, None]), Ex(_conv_weight(x, 2)), stride=(1, 2), padding=1),
        ),
        sharp=(8.0, 2.0),
    ),
    Operation(
        "conv3d",
        lambda x, y: (
            F.conv3d(x[None, None, :, :, None], _conv_weight(x, 3), padding=(1, 1, 0)),
            tol.conv3d(Ex(x[None, None, :, :, None]), Ex(_conv_weight(x, 3)), padding=(1, 1, 0)),
        ),
        sharp=(8.0, 2.0),
    ),
    Operation(
        "conv_transpose1d",
        lambda x, y: (
            F.conv_transpose1d(x[:, None], _conv_weight(x, 1, True), y[:2, 0] if y.shape[0] >= 2 else None, stride=2),
            tol.conv_transpose1d(Ex(x[:, None]), Ex(_conv_weight(x, 1, True)), Ex(y[:2, 0]) if y.shape[0] >= 2 else None, stride=2),
        ),
        sharp=(8.0, 6.0),  # float16/bfloat16: the taps added in the working dtype
    ),
    Operation(
        "conv_transpose2d",
        lambda x, y: (
            F.conv_transpose2d(x[None, None], _conv_weight(x, 2, True), stride=(1, 2), padding=(0, 1), output_padding=(0, 1)),
            tol.conv_transpose2d(Ex(x[None, None]), Ex(_conv_weight(x, 2, True)), stride=(1, 2), padding=(0, 1), output_padding=(0, 1)),
        ),
        sharp=(8.0, 6.0),  # float16/bfloat16: the taps added in the working dtype
    ),
    Operation(
        "conv_transpose3d",
        lambda x, y: (
            F.conv_transpose3d(x[None, None, :, :, None], _conv_weight(x, 3, True), stride=(2, 1, 1), output_padding=(1, 0, 0)),
            tol.conv_transpose3d(Ex(x[None, None, :, :, None]), Ex(_conv_weight(x, 3, True)), stride=(2, 1, 1), output_padding=(1, 0, 0)),
        ),
        sharp=(8.0, 6.0),  # float16/bfloat16: the taps added in the working dtype
    ),
    Operation(
        "embedding",
        lambda x, y: (
            F.embedding(torch.arange(x.shape[0], device=x.device).flip(0), x),
            tol.embedding(torch.arange(x.shape[0]).flip(0), Ex(x)),
        ),
        sharp=(0.0, 0.0),
    ),
    Operation(
        "scaled_dot_product_attention",
        lambda x, y: (
            F.scaled_dot_product_attention(x[None], y[None], x[None]),
            tol.scaled_dot_product_attention(Ex(x)[None], Ex(y)[None], Ex(x)[None]),
        ),
        sharp=(2500.0, 16.0),
    ),
    Operation("cast_from_float64", lambda x, y: _cast(x), sharp=(2.0, 2.0)),
]


def _cast(x: torch.Tensor):
    """A float64 computation cast to ``x``'s dtype: one rounding."""
    return (x.double() * 1.1).to(x.dtype), tol.cast(Ex(x.double()) * 1.1, x.dtype)


# The drawn row length: long enough to reach bfloat16's gamma(256) and past it.
LENGTHS = st.sampled_from([1, 2, 3, 5, 8, 17, 64, 300])


@st.composite
def operands(draw, dtype: torch.dtype, positive: bool, device: str):
    rows, n = draw(st.integers(1, 3)), draw(LENGTHS)
    x = draw(tensors(shape=(rows, n), dtype=dtype, device=device))
    y = draw(tensors(shape=(rows, n), dtype=dtype, device=device))
    return (x.abs(), y.abs()) if positive else (x, y)


@pytest.mark.parametrize("device", available_devices())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.name)
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_torch_stays_within_the_bound(operation, dtype, device, data):
    x, y = data.draw(operands(dtype, operation.positive, device))
    actual, expected = operation.run(x, y)
    assert actual.dtype == dtype
    tol.assert_within_bound(actual, expected, what=f"torch's {operation.name} in {dtype}")


def _typical(dtype: torch.dtype, positive: bool, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(3, n, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    return (x.abs() + 0.5, y.abs() + 0.5) if positive else (x, y)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.name)
def test_a_few_ulps_beyond_the_bound_is_caught(operation, dtype):
    x, y = _typical(dtype, operation.positive)
    actual, expected = operation.run(x, y)
    tol.assert_within_bound(actual, expected)
    claimed = expected.representable & expected.error.isfinite()
    assert bool(claimed.all()), f"{operation.name}: typical inputs must be claimed everywhere"
    # The bound is sharp: a few units of roundoff of the result's size.
    u = tol.unit_roundoff(dtype)
    ratio = (expected.error / (u * expected.value.abs() + torch.finfo(dtype).tiny)).median().item()
    wide, low = operation.sharp
    limit = {torch.float32: wide, torch.float64: 2 * wide}.get(dtype, low)
    assert ratio <= limit, f"{operation.name}: median bound {ratio:.3g} u of |result|, expected <= {limit}"
    # Beyond it by a few ulps of the result, in either direction: caught.
    ulp = 2 * u * expected.value.abs() + torch.finfo(dtype).tiny
    for sign in (1, -1):
        off = expected.value + sign * (tol.SLACK * expected.error + 4 * ulp)
        with pytest.raises(tol.ToleranceExceeded, match="outside the error bound"):
            tol.assert_within_bound(off, expected)
    # One element off is enough.
    one = expected.value.clone()
    one.view(-1)[0] += tol.SLACK * expected.error.view(-1)[0] + 4 * ulp.view(-1)[0]
    with pytest.raises(tol.ToleranceExceeded, match="1 / "):
        tol.assert_within_bound(one, expected)


def test_every_public_operation_is_tested():
    covered = {"exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "gelu", "silu", "softplus", "sqrt",
               "rsqrt", "reciprocal", "abs", "relu", "clamp", "pow", "add", "subtract", "multiply", "divide",
               "where", "sum", "mean", "var", "std", "amax", "amin", "logsumexp", "softmax", "log_softmax",
               "layer_norm", "rms_norm", "batch_norm", "instance_norm", "scaled_dot_product_attention", "matmul", "einsum", "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "embedding", "cast",
               "exact"}
    operations = {name for name in tol.__all__ if callable(getattr(tol, name)) and name[0].islower()}
    helpers = {"accumulating", "accumulation_dtype", "assert_within_bound", "gamma", "unit_roundoff"}
    assert operations - helpers - covered == set()


LIBRARY = {
    "exp": (torch.exp, False), "expm1": (torch.expm1, False), "log": (torch.log, True), "log1p": (torch.log1p, True),
    "tanh": (torch.tanh, False), "erf": (torch.erf, False), "sqrt": (torch.sqrt, True), "rsqrt": (torch.rsqrt, True),
    "sigmoid": (torch.sigmoid, False), "silu": (F.silu, False), "softplus": (F.softplus, False), "gelu": (F.gelu, False),
}


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_constants_cover_measured_errors(name):
    """LIBRARY_ULPS is at least twice the largest error of torch's float32 kernels over a sweep of scales."""
    function, positive = LIBRARY[name]
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(1 << 15, generator=g) * scale for scale in (1e-6, 1e-3, 0.1, 1, 4, 10, 30, 80)])
    x = x.abs() if positive else x
    computed, exact = function(x).double(), function(x.double())
    size = exact.abs() + (x.double().abs() / 2 if name == "gelu" else 0)  # gelu: relative to |f| + |x|/2
    # silu's result is lost where exp(-x) overflows float32 (an absolute term covers it).
    ok = (exact.abs() < torch.finfo(torch.float32).max) & (size > 4 * torch.finfo(torch.float32).tiny) & ~((name == "silu") & (x < -87))
    measured = ((computed - exact).abs() / size)[ok].max().item() / tol.unit_roundoff(torch.float32)
    assert 2 * measured <= tol.LIBRARY_ULPS[name], f"{name}: measured {measured:.3g} u"


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "silu"])
def test_slope_constants_bound_the_derivative(name):
    t = torch.linspace(-20, 20, 400001, dtype=torch.float64, requires_grad=True)
    f = {"gelu": F.gelu, "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"), "silu": F.silu}[name]
    (slope,) = torch.autograd.grad(f(t).sum(), t)
    constant = tol._SILU_SLOPE if name == "silu" else tol._GELU_SLOPE
    assert slope.abs().max().item() <= constant


@pytest.mark.parametrize(
    "operation, torch_op",
    [(lambda a: tol.softmax(a, 0), lambda t: torch.softmax(t, 0)),
     (lambda a: tol.log_softmax(a, 0), lambda t: torch.log_softmax(t, 0)),
     (lambda a: tol.logsumexp(a, 0), lambda t: torch.logsumexp(t, 0))],
    ids=["softmax", "log_softmax", "logsumexp"],
)
def test_reducing_an_empty_dim_gives_what_torch_gives(operation, torch_op):
    """torch's softmax over an empty dim is empty and its logsumexp -inf; tol.amax once raised
    there (torch refuses the max of nothing), which blamed the spec of nn.Softmax(dim=0)."""
    empty = torch.empty(0, 3)
    got, want = operation(tol.exact(empty)), torch_op(empty)
    assert tuple(got.value.shape) == tuple(want.shape)
    assert torch.equal(got.value.float(), want)


def test_batch_norm_bounds_the_statistics_torch_stores_in_the_working_dtype():
    """torch's CPU batch_norm (and instance_norm) rounds the batch mean to bfloat16 before
    subtracting it: 100 + N(0, 1) normalized is off by a fifth, where layer_norm's kernel
    (statistics in float32) is not; batch_norm's bound holds, layer_norm's would be a false alarm."""
    g = torch.Generator().manual_seed(0)
    x = (100 + torch.randn(2, 3, 16, generator=g, dtype=torch.float64)).to(torch.bfloat16)
    out = F.instance_norm(x)
    tol.assert_within_bound(out, tol.instance_norm(Ex(x)))
    tol.assert_within_bound(out, tol.batch_norm(Ex(x.reshape(1, 6, 16)), training=True).map(lambda t: t.reshape(2, 3, 16)))
    with pytest.raises(tol.ToleranceExceeded, match="outside the error bound"):
        tol.assert_within_bound(out, tol.layer_norm(Ex(x), (16,)))
    tol.assert_within_bound(F.layer_norm(x, (16,)), tol.layer_norm(Ex(x), (16,)))


def test_batch_norm_names_what_is_missing():
    with pytest.raises(ValueError, match="needs running_mean and running_var"):
        tol.batch_norm(Ex(torch.zeros(2, 3)), training=False)
    with pytest.raises(ValueError, match="no channel dim 1"):
        tol.batch_norm(Ex(torch.zeros(3)), training=True)


@pytest.mark.parametrize("f, t, e", [("sigmoid", -59.7, 1.07e-5), ("sigmoid", 40.0, 4.0), ("tanh", 25.0, 10.0)])
def test_a_saturated_function_still_carries_its_arguments_error(f, t, e):
    """sigmoid's slope s (1 - s) is 0 in float64 from |t| = 37 (tanh's 1 - tanh**2 from 19): the
    error carried in from a computed argument was dropped (nn.LSTMCell's output gate at -59.7)."""
    arg = tol.Bounded(torch.tensor([t], dtype=torch.float64), torch.tensor([e], dtype=torch.float64),
                      torch.tensor([True]), torch.float64)
    bound = getattr(tol, f)(arg)
    moved = getattr(torch, f)(torch.tensor([t - e], dtype=torch.float64))  # an argument the bound allows
    assert (moved - bound.value).abs().item() <= bound.error.item()


# -- the arguments torch takes, in torch's order ----------------------------------------------


def _randn(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_casts_to_torchs_dtype_argument_first(name):
    """``F.softmax(x, dim, dtype=torch.float32)`` on bfloat16: float32's bound, which the bfloat16
    result (rounded to 8 bits) is far outside."""
    x = _randn(4, 16, dtype=torch.bfloat16)
    bound = getattr(tol, name)(Ex(x), -1, dtype=torch.float32)
    assert bound.dtype == torch.float32
    tol.assert_within_bound(getattr(F, name)(x, -1, dtype=torch.float32), bound)
    with pytest.raises(tol.ToleranceExceeded, match="outside the error bound"):
        tol.assert_within_bound(getattr(F, name)(x, -1).float(), bound)


def test_batch_norm_takes_torchs_positional_arguments():
    """``F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)``:
    eps is the eighth argument, after momentum (which only updates the running statistics)."""
    x, rm, rv, w, b = _randn(4, 3, 5), _randn(3, seed=1), _randn(3, seed=2).abs() + 0.5, _randn(3, seed=3), _randn(3, seed=4)
    for training in (True, False):
        out = F.batch_norm(x, rm.clone(), rv.clone(), w, b, training, 0.1, 0.5)  # clones: training updates them
        tol.assert_within_bound(out, tol.batch_norm(Ex(x), Ex(rm), Ex(rv), Ex(w), Ex(b), training, 0.1, 0.5))
        with pytest.raises(tol.ToleranceExceeded, match="outside the error bound"):  # eps=1e-5, not 0.5
            tol.assert_within_bound(out, tol.batch_norm(Ex(x), Ex(rm), Ex(rv), Ex(w), Ex(b), training, 0.1))


def test_instance_norm_with_running_statistics_as_torch():
    x, rm, rv, w, b = _randn(2, 3, 5), _randn(3, seed=1), _randn(3, seed=2).abs() + 0.5, _randn(3, seed=3), _randn(3, seed=4)
    out = F.instance_norm(x, rm, rv, w, b, use_input_stats=False)
    bound = tol.instance_norm(Ex(x), Ex(rm), Ex(rv), Ex(w), Ex(b), use_input_stats=False)
    tol.assert_within_bound(out, bound)
    with pytest.raises(tol.ToleranceExceeded, match="outside the error bound"):  # each sample's own statistics
        tol.assert_within_bound(F.instance_norm(x, rm, rv, w, b), bound)
    tol.assert_within_bound(F.instance_norm(x, rm.clone(), rv.clone(), w, b),
                            tol.instance_norm(Ex(x), Ex(rm), Ex(rv), Ex(w), Ex(b)))
    with pytest.raises(ValueError, match=r"use_input_stats=False\) needs running_mean and running_var"):
        tol.instance_norm(Ex(x), use_input_stats=False)


@pytest.mark.parametrize("keys", [2, 4, 6])
def test_causal_attention_sees_the_keys_torch_lets_it_see(keys):
    """``is_causal=True``: query ``i`` attends to keys ``0..i`` (top-left aligned, as torch), with
    fewer, as many and more keys than queries; the unmasked result is far outside that bound."""
    q, k, v = _randn(1, 2, 4, 3), _randn(1, 2, keys, 3, seed=1), _randn(1, 2, keys, 5, seed=2)
    bound = tol.scaled_dot_product_attention(Ex(q), Ex(k), Ex(v), is_causal=True)
    tol.assert_within_bound(F.scaled_dot_product_attention(q, k, v, is_causal=True), bound)
    with pytest.raises(tol.ToleranceExceeded, match="outside the error bound"):
        tol.assert_within_bound(F.scaled_dot_product_attention(q, k, v), bound)


def test_attention_takes_scale_and_grouped_heads_as_keywords_and_refuses_a_mask():
    q, k, v = _randn(1, 4, 3, 5), _randn(1, 2, 3, 5, seed=1), _randn(1, 2, 3, 5, seed=2)
    out = F.scaled_dot_product_attention(q, k, v, scale=0.3, enable_gqa=True)
    tol.assert_within_bound(out, tol.scaled_dot_product_attention(Ex(q), Ex(k), Ex(v), scale=0.3, enable_gqa=True))
    with pytest.raises(tol.ToleranceExceeded, match="outside the error bound"):
        tol.assert_within_bound(out, tol.scaled_dot_product_attention(Ex(q), Ex(k), Ex(v), enable_gqa=True))
    with pytest.raises(ValueError, match="attn_mask and dropout_p are not modelled"):
        tol.scaled_dot_product_attention(Ex(q), Ex(q), Ex(q), torch.ones(3, 3, dtype=torch.bool))
