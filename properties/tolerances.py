"""Tolerances from rounding-error bounds, not from one fixed atol.

A spec's reference is written with the operations below.  Each takes and
returns a :class:`Bounded`: the exact result (computed in float64 from the same
rounded inputs and parameters, so casting up is exact), a bound on how far a
computation carried out in the working dtype may be from it, and where that
claim holds at all (no intermediate result can overflow).  The bound scales
with the magnitudes involved and the reduction length, so it stays tight for
ordinary values and does not fail on huge values or cancellation.

Standard analysis (Higham, *Accuracy and Stability of Numerical Algorithms*,
2nd ed., ch. 2-4), with unit roundoff ``u`` and ``gamma(n) = n*u / (1 - n*u)``:

* a sum of ``n`` terms is within ``gamma(n-1) * sum(|x|)`` of the exact sum in
  any summation order (Higham (4.4); pairwise and blocked orders do better);
* a dot product of length ``n`` is within ``gamma(n) * |x|^T |y|`` (Higham (3.5));
* one elementwise operation adds one rounding, ``u * |result|`` (Higham (2.4)).

Where torch accumulates: float16/bfloat16 reductions, products and fused
kernels (softmax, layer_norm, ...) run in float32 on CPU and CUDA and round
once to the working dtype, so the accumulation term uses float32's ``u`` and
one rounding ``u_work * |result|`` is added.  A layer that accumulates in the
working dtype itself declares ``LayerSpec(accumulation="working")``; the
framework then evaluates its reference inside ``accumulating("working")``.
float32 matrix products and convolutions on CUDA may round their inputs to
TF32 (10-bit mantissa) when ``torch.backends.cuda.matmul.allow_tf32`` /
``torch.backends.cudnn.allow_tf32`` are on; the bound then adds ``2 * 2**-11``
per product (``2 * 2**-8`` under ``set_float32_matmul_precision("medium")``).

The float64 reference rounds too: every operation adds the same bound with
float64's ``u`` for the reference's own rounding, so that float64 layers are
judged soundly (there the two terms are of the same size).  Each operation may
also lose up to the dtype's smallest normal number to underflow
(flush-to-zero kernels lose that much, gradual underflow less), and products
may read a subnormal operand as zero (denormals-are-zero).  A bound that
comes out infinite or NaN (an ill-conditioned point, such as ``log`` next to
zero) makes no claim there; ``assert_within_bound`` records it as a
Hypothesis event, never as a silent pass.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from properties import claims

__all__ = [
    "ACCUMULATIONS",
    "Bounded",
    "LIBRARY_ULPS",
    "MIRRORS",
    "SLACK",
    "ToleranceExceeded",
    "abs",
    "accumulating",
    "accumulation_dtype",
    "add",
    "amax",
    "amin",
    "assert_within_bound",
    "batch_norm",
    "cast",
    "clamp",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "divide",
    "einsum",
    "embedding",
    "erf",
    "exact",
    "exp",
    "expm1",
    "gamma",
    "gelu",
    "instance_norm",
    "layer_norm",
    "linear",
    "log",
    "log1p",
    "log_softmax",
    "logsumexp",
    "matmul",
    "mean",
    "multiply",
    "pow",
    "reciprocal",
    "relu",
    "rms_norm",
    "rsqrt",
    "scaled_dot_product_attention",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "sqrt",
    "std",
    "subtract",
    "sum",
    "tanh",
    "unit_roundoff",
    "var",
    "where",
]

# The torch function each operation mirrors: it takes that function's
# arguments in its order, with its names, defaults and layouts (F.linear's
# weight is (out, in)); tests/test_references.py holds the signatures to it and
# docs/references.md's table is generated from it (python -m properties.records --docs).
MIRRORS: dict[str, str] = {
    "abs": "torch.abs",
    "add": "torch.add",
    "subtract": "torch.subtract",
    "multiply": "torch.multiply",
    "divide": "torch.divide",
    "reciprocal": "torch.reciprocal",
    "relu": "torch.nn.functional.relu",
    "clamp": "torch.clamp",
    "where": "torch.where",
    "sqrt": "torch.sqrt",
    "rsqrt": "torch.rsqrt",
    "exp": "torch.exp",
    "expm1": "torch.expm1",
    "log": "torch.log",
    "log1p": "torch.log1p",
    "tanh": "torch.tanh",
    "sigmoid": "torch.sigmoid",
    "erf": "torch.erf",
    "pow": "torch.pow",
    "gelu": "torch.nn.functional.gelu",
    "silu": "torch.nn.functional.silu",
    "softplus": "torch.nn.functional.softplus",
    "sum": "torch.sum",
    "mean": "torch.mean",
    "var": "torch.var",
    "std": "torch.std",
    "amax": "torch.amax",
    "amin": "torch.amin",
    "logsumexp": "torch.logsumexp",
    "softmax": "torch.nn.functional.softmax",
    "log_softmax": "torch.nn.functional.log_softmax",
    "layer_norm": "torch.nn.functional.layer_norm",
    "rms_norm": "torch.nn.functional.rms_norm",
    "batch_norm": "torch.nn.functional.batch_norm",
    "instance_norm": "torch.nn.functional.instance_norm",
    "matmul": "torch.matmul",
    "einsum": "torch.einsum",
    "scaled_dot_product_attention": "torch.nn.functional.scaled_dot_product_attention",
    "linear": "torch.nn.functional.linear",
    "conv1d": "torch.nn.functional.conv1d",
    "conv2d": "torch.nn.functional.conv2d",
    "conv3d": "torch.nn.functional.conv3d",
    "conv_transpose1d": "torch.nn.functional.conv_transpose1d",
    "conv_transpose2d": "torch.nn.functional.conv_transpose2d",
    "conv_transpose3d": "torch.nn.functional.conv_transpose3d",
    "embedding": "torch.nn.functional.embedding",
}

# The operation for each torch function's name (torch.relu and F.relu alike), and torch's aliases.
_OPERATION_OF = {
    **{path.rsplit(".", 1)[1]: operation for operation, path in MIRRORS.items()},
    "mul": "multiply", "sub": "subtract", "div": "divide", "true_divide": "divide", "absolute": "abs",
    "clip": "clamp", "special_expit": "sigmoid", "special_erf": "erf",
}

# A computed result may be off by up to ``SLACK`` times the bound derived
# below.  The bounds are worst cases already and include the float64
# reference's own rounding explicitly (for float64 layers it is as large as
# the layer's); the factor 2 covers the second-order terms the first-order
# propagation through library functions drops.
SLACK = 2.0

_U64 = 2.0**-53  # the float64 reference's unit roundoff

# How many units of the compute dtype's roundoff a library function may be
# off, relative to |result|: at least twice the largest error measured on
# torch's CPU kernels (tests/test_tolerance_operations.py::
# test_library_constants_cover_measured_errors sweeps them) and at least the
# CUDA C Programming Guide's maxima (expf, tanhf, erff, rsqrtf: 2 ulp = 4 u).
# Composite kernels (sigmoid, silu, gelu, softplus) chain a few such steps.
LIBRARY_ULPS = {
    "exp": 4.0,
    "expm1": 4.0,
    "log": 4.0,
    "log1p": 4.0,
    "tanh": 4.0,
    "erf": 4.0,
    "sqrt": 3.0,
    "rsqrt": 4.0,
    "pow": 4.0,
    "sigmoid": 8.0,
    "silu": 8.0,
    "softplus": 8.0,
    "gelu": 24.0,  # relative to |result| + |x|/2: 1 + erf(x/sqrt 2) cancels for x << 0
}

# torch's float16/bfloat16 CPU erf is accurate in absolute, not relative,
# terms near zero (erf(-1.83e-7) in bfloat16 gives -4.17e-7): 8 float32 units.
_ERF_LOW_PRECISION_ABSOLUTE = 8 * 2.0**-24

ACCUMULATIONS = ("torch", "working")
_accumulation: contextvars.ContextVar[str] = contextvars.ContextVar("accumulation", default="torch")


@contextlib.contextmanager
def accumulating(mode: str) -> Iterator[None]:
    """Build bounds for a computation that accumulates as ``mode`` says.

    ``"torch"`` (the default): float16/bfloat16 accumulate in float32, as
    torch's reductions, matmuls and fused kernels do.  ``"working"``: in the
    working dtype itself (a layer that sums bfloat16 values in bfloat16).
    """
    if mode not in ACCUMULATIONS:
        raise ValueError(f"accumulating({mode!r}): choose from {ACCUMULATIONS}.")
    token = _accumulation.set(mode)
    try:
        yield
    finally:
        _accumulation.reset(token)


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half the distance from 1.0 to the next number: float32 2**-24, float16 2**-11."""
    return torch.finfo(dtype).eps / 2


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype reductions of ``dtype`` accumulate in (see ``accumulating``)."""
    if _accumulation.get() == "working":
        return dtype
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _note(text: str) -> None:
    """A Hypothesis event inside a test (counted in its statistics); nothing outside one."""
    from hypothesis import event
    from hypothesis.control import _current_build_context

    if _current_build_context.value is not None:
        event(text)


def gamma(n: int, dtype: torch.dtype) -> float:
    """``n*u / (1 - n*u)``: the relative error bound of ``n`` chained roundings (Higham Lemma 3.1).

    Infinite once ``n*u >= 1`` (bfloat16 from n = 256): recorded as an event.
    """
    nu = max(n, 0) * unit_roundoff(dtype)
    if nu >= 1:
        _note(f"bound: infinite in {str(dtype).removeprefix('torch.')} (n={n})")
        return math.inf
    return nu / (1 - nu)


def _gamma_both(n: int, dtype: torch.dtype) -> float:
    """``gamma(n)`` of the computation plus the float64 reference's own."""
    return gamma(n, dtype) + gamma(n, torch.float64)


def _underflow(n: int, dtype: torch.dtype) -> float:
    """Absolute error ``n`` accumulated operations and the final rounding may lose to underflow."""
    return n * torch.finfo(accumulation_dtype(dtype)).tiny + torch.finfo(dtype).tiny


@dataclasses.dataclass(frozen=True)
class Bounded:
    """An exact float64 value with the error bound of computing it in ``dtype``.

    ``representable`` is False where an intermediate result of the computation
    may exceed the dtype's range (or the accumulation dtype's, for a
    reduction): there inf/NaN are legitimate and no claim is made.
    ``device`` is where the computation runs (TF32 applies on CUDA only).

    Arithmetic operators work as the operations do (``x - mean(x, dim=-1,
    keepdim=True)``, ``a @ b``, ``2 * x``, ``x ** 2``); ``map`` applies a
    function that only moves elements (transpose, reshape, indexing).
    """

    value: torch.Tensor
    error: torch.Tensor
    representable: torch.Tensor
    dtype: torch.dtype
    device: str = "cpu"

    @property
    def shape(self) -> torch.Size:
        return self.value.shape

    @property
    def mT(self) -> Bounded:
        return self.map(lambda t: t.mT)

    def map(self, move: Callable[[torch.Tensor], torch.Tensor]) -> Bounded:
        """``move`` (transpose, reshape, indexing, ...) applied to value, error and mask alike."""
        return Bounded(move(self.value), move(self.error), move(self.representable), self.dtype, self.device)

    def __getitem__(self, index) -> Bounded:
        return self.map(lambda t: t[index])

    def _rounded(self, value, error, representable) -> Bounded:
        """A new result, rounded once to ``dtype`` (and by the float64 reference)."""
        error = error + unit_roundoff(self.dtype) * (value.abs() + error) + _U64 * value.abs()
        return _finish(value, error, representable, self.dtype, self.device)

    def __add__(self, other) -> Bounded:
        return add(self, other)

    def __radd__(self, other) -> Bounded:
        return add(other, self)

    def __sub__(self, other) -> Bounded:
        return subtract(self, other)

    def __rsub__(self, other) -> Bounded:
        return subtract(other, self)

    def __mul__(self, other) -> Bounded:
        return multiply(self, other)

    def __rmul__(self, other) -> Bounded:
        return multiply(other, self)

    def __truediv__(self, other) -> Bounded:
        return divide(self, other)

    def __rtruediv__(self, other) -> Bounded:
        return divide(other, self)

    def __matmul__(self, other) -> Bounded:
        return matmul(self, other)

    def __neg__(self) -> Bounded:
        return Bounded(-self.value, self.error, self.representable, self.dtype, self.device)

    def __pow__(self, exponent: int) -> Bounded:
        return pow(self, exponent)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        """torch's functions see a Bounded and would fail deep inside (or drop its bound):
        say which operation of this module to use instead (``torch.relu`` -> ``tol.relu``)."""
        name = getattr(func, "__name__", "")
        if name.startswith("__"):
            # ``tensor + bounded``: torch's operator gives up (NotImplemented), and Python
            # then calls Bounded.__radd__, which computes the bound.
            return NotImplemented
        called = torch.overrides.resolve_name(func) or name
        if name in _OPERATION_OF:
            raise TypeError(
                f"{called} was called on a tolerances.Bounded, which carries an error bound torch's functions "
                f"do not compute: use tol.{_OPERATION_OF[name]} (properties.tolerances.{_OPERATION_OF[name]}) instead."
            )
        raise TypeError(
            f"{called} was called on a tolerances.Bounded, which carries an error bound torch's functions "
            "do not compute, and properties.tolerances has no such operation: compute with tol operations "
            "(tol.linear, tol.sum, tol.exp, ...; the operators + - * / ** and @ work on a Bounded), and move elements "
            "(transpose, reshape, indexing) with .map, e.g. b.map(lambda t: t.transpose(-1, -2))."
        )


def _fits(magnitude: torch.Tensor, error: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Whether every partial result fits ``dtype`` (an infinite bound is no claim, not an overflow)."""
    return (magnitude + error <= torch.finfo(dtype).max) | error.isinf()


def _finish(value, error, representable, dtype, device) -> Bounded:
    """The result: a NaN bound becomes infinite (no claim), an overflowing one unrepresentable."""
    error = torch.nan_to_num(error, nan=math.inf, posinf=math.inf)
    # A NaN value the exact computation owes (a mean over nothing) stays a claim.
    fits = value.isnan() | (value.abs() + error <= torch.finfo(dtype).max) | error.isinf()
    return Bounded(value, error, representable & fits, dtype, device)


def exact(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> Bounded:
    """A leaf: an input or a parameter, already rounded to ``dtype`` (no error)."""
    dtype = tensor.dtype if dtype is None else dtype
    value = tensor.detach().to(device="cpu", dtype=torch.float64)
    return Bounded(value, torch.zeros_like(value), value.isfinite(), dtype, tensor.device.type)


def _leaf(x, like: Bounded) -> Bounded:
    """A Python number or tensor mixed into an operation: exact, in ``like``'s dtype."""
    if isinstance(x, Bounded):
        return x
    value = torch.as_tensor(x, dtype=torch.float64).detach().cpu()
    return Bounded(value, torch.zeros_like(value), value.isfinite(), like.dtype, like.device)


def _pair(a, b) -> tuple[Bounded, Bounded]:
    if not isinstance(a, Bounded) and not isinstance(b, Bounded):
        raise TypeError("tolerances: at least one operand must be a Bounded (wrap tensors with exact())")
    a = _leaf(a, b) if not isinstance(a, Bounded) else a
    return a, _leaf(b, a)


def _device(*operands: Bounded) -> str:
    return next((o.device for o in operands if o.device != "cpu"), "cpu")


# -- elementwise arithmetic (Higham (2.4): one rounding each) -----------------------


def add(input, other) -> Bounded:
    """``a + b`` (broadcasting; numbers allowed): errors add, plus one rounding."""
    input, other = _pair(input, other)
    return Bounded._rounded(
        dataclasses.replace(input, device=_device(input, other)),
        input.value + other.value,
        input.error + other.error,
        input.representable & other.representable,
    )


def subtract(input, other) -> Bounded:
    """``a - b`` (broadcasting; numbers allowed): errors add, plus one rounding."""
    input, other = _pair(input, other)
    return Bounded._rounded(
        dataclasses.replace(input, device=_device(input, other)),
        input.value - other.value,
        input.error + other.error,
        input.representable & other.representable,
    )


def multiply(input, other) -> Bounded:
    """``a * b`` (broadcasting): ``|a| b.error + a.error |b| + a.error b.error``, one rounding, underflow."""
    input, other = _pair(input, other)
    inherited = input.value.abs() * other.error + input.error * other.value.abs() + input.error * other.error
    underflow = torch.finfo(input.dtype).tiny  # a product may underflow to zero
    return Bounded._rounded(
        dataclasses.replace(input, device=_device(input, other)),
        input.value * other.value,
        inherited + underflow,
        input.representable & other.representable,
    )


def divide(input, other) -> Bounded:
    """``a / b``: ``(a.error + |a/b| b.error) / (|b| - b.error)`` plus one rounding.

    Exact first-order-free bound: ``|a'/b' - a/b| = |(a' - a) - (a/b)(b' - b)| / |b'|``
    with ``|b'| >= |b| - b.error``; infinite (no claim) where ``b`` may be zero.
    """
    input, other = _pair(input, other)
    quotient = input.value / other.value
    room = other.value.abs() - other.error
    inherited = torch.where(
        room > 0, (input.error + quotient.abs() * other.error) / room.clamp_min(torch.finfo(torch.float64).tiny), math.inf
    )
    inherited = torch.where((input.error == 0) & (other.error == 0), 0.0, inherited)
    return Bounded._rounded(
        dataclasses.replace(input, device=_device(input, other)),
        quotient,
        inherited + torch.finfo(input.dtype).tiny,
        input.representable & other.representable,
    )


def reciprocal(input: Bounded) -> Bounded:
    """``1 / a`` (see ``divide``)."""
    return divide(1.0, input)


def relu(input: Bounded) -> Bounded:
    """``max(a, 0)`` is exact and 1-Lipschitz: the error carries over unchanged."""
    return dataclasses.replace(input, value=input.value.clamp_min(0))


def abs(input: Bounded) -> Bounded:  # noqa: A001 - mirrors torch.abs
    """``|a|``: exact and 1-Lipschitz."""
    return dataclasses.replace(input, value=input.value.abs())


def clamp(input: Bounded, min: float | None = None, max: float | None = None) -> Bounded:  # noqa: A002
    """``a.clamp(min, max)``: exact and 1-Lipschitz."""
    return dataclasses.replace(input, value=input.value.clamp(min, max))


def where(condition: torch.Tensor, input, other) -> Bounded:
    """``torch.where(condition, input, other)``: each element is one operand's, exactly.

    ``condition`` must be what the layer computes too (a comparison of exact
    inputs, a mask); a condition on a rounded intermediate can flip.
    """
    input, other = _pair(input, other)
    condition = condition.detach().cpu()
    return Bounded(
        torch.where(condition, input.value, other.value),
        torch.where(condition, input.error, other.error),
        torch.where(condition, input.representable, other.representable),
        input.dtype,
        _device(input, other),
    )


def cast(a: Bounded, dtype: torch.dtype) -> Bounded:
    """``a.to(dtype)``: one rounding into ``dtype`` (none where ``dtype`` holds ``a``'s exactly).

    Subsequent operations then round in ``dtype``.
    """
    wider = torch.finfo(dtype).bits >= torch.finfo(a.dtype).bits and (
        torch.finfo(dtype).eps <= torch.finfo(a.dtype).eps and torch.finfo(dtype).max >= torch.finfo(a.dtype).max
    )
    if wider:  # float16 -> float32 -> float64, bfloat16 -> float32: exact
        return dataclasses.replace(a, dtype=dtype)
    error = a.error + unit_roundoff(dtype) * (a.value.abs() + a.error) + torch.finfo(dtype).tiny
    return _finish(a.value, error, a.representable, dtype, a.device)


# -- library functions --------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype torch evaluates elementwise functions of ``dtype`` in (opmath)."""
    return accumulation_dtype(dtype)


def _library(a: Bounded, name: str, value: torch.Tensor, slope: torch.Tensor, scale: torch.Tensor | None = None,
             absolute: torch.Tensor | float = 0.0, ulps: float | None = None) -> Bounded:
    """``f(a)`` for a library function ``f``.

    ``slope`` bounds ``|f'|`` over ``[a - a.error, a + a.error]``, so the
    inherited error ``|f(a') - f(a)| <= slope * a.error`` (mean value theorem).
    The function itself is within ``k u_c |f|`` (``k = LIBRARY_ULPS[name]``,
    ``u_c`` of the dtype torch evaluates it in, ``scale`` replacing ``|f|``
    where given), plus one rounding to the working dtype where that differs,
    plus the float64 reference's own ``k u_64 |f|``.
    """
    k = LIBRARY_ULPS[name] if ulps is None else ulps
    inherited = torch.where(a.error > 0, slope * a.error, 0.0)
    magnitude = value.abs() if scale is None else scale
    compute = _compute_dtype(a.dtype)
    error = inherited + k * unit_roundoff(compute) * (magnitude + inherited) + k * _U64 * magnitude
    error = error + absolute + torch.finfo(a.dtype).tiny
    if compute != a.dtype:
        error = error + unit_roundoff(a.dtype) * (value.abs() + error)
    return _finish(value, error, a.representable, a.dtype, a.device)


def _nearest_to_zero(a: Bounded) -> torch.Tensor:
    """``min |t|`` over ``[a - a.error, a + a.error]``."""
    return (a.value.abs() - a.error).clamp_min(0)


def _lowest(a: Bounded) -> torch.Tensor:
    return a.value - a.error


def sqrt(input: Bounded) -> Bounded:
    """``sqrt(a)`` (correctly rounded in IEEE arithmetic, Higham (2.4)).

    Inherited: ``min(e / (2 sqrt(a - e)), sqrt(e))`` (``|sqrt s - sqrt t| <= sqrt|s - t|``).
    No claim where ``a`` may be computed below zero although it is not.
    """
    value = input.value.sqrt()
    lowest = _lowest(input)
    slope = torch.where(lowest > 0, 0.5 / lowest.clamp_min(1e-300).sqrt(), math.inf)
    slope = torch.minimum(slope, 1 / input.error.sqrt())  # slope * e <= sqrt(e)
    out = _library(input, "sqrt", value, slope)
    return dataclasses.replace(out, representable=out.representable & ((lowest >= 0) | (input.value < 0)))


def rsqrt(input: Bounded) -> Bounded:
    """``1 / sqrt(a)``: ``|f'| = t**-1.5 / 2``, largest at ``a - e`` (infinite if that may be <= 0)."""
    lowest = _lowest(input)
    slope = torch.where(lowest > 0, 0.5 * lowest.clamp_min(1e-300) ** -1.5, math.inf)
    return _library(input, "rsqrt", input.value.rsqrt(), slope)


def exp(input: Bounded) -> Bounded:
    """``exp(a)``: ``|f'| = exp``, largest at ``a + e``; overflow makes no claim."""
    return _library(input, "exp", input.value.exp(), (input.value + input.error).exp())


def expm1(input: Bounded) -> Bounded:
    """``exp(a) - 1``, accurate near zero: ``|f'| = exp``, largest at ``a + e``."""
    return _library(input, "expm1", input.value.expm1(), (input.value + input.error).exp())


def log(input: Bounded) -> Bounded:
    """``log(a)``: ``|f'| = 1/t``, largest at ``a - e`` (infinite, no claim, where that is <= 0)."""
    lowest = _lowest(input)
    slope = torch.where(lowest > 0, 1 / lowest.clamp_min(1e-300), math.inf)
    return _library(input, "log", input.value.log(), slope)


def log1p(input: Bounded) -> Bounded:
    """``log(1 + a)``, accurate near zero: ``|f'| = 1/(1 + t)``, largest at ``a - e``."""
    lowest = _lowest(input) + 1
    slope = torch.where(lowest > 0, 1 / lowest.clamp_min(1e-300), math.inf)
    return _library(input, "log1p", input.value.log1p(), slope)


def tanh(input: Bounded) -> Bounded:
    """``tanh(a)``: ``|f'| = 1 - tanh(t)**2 = 1 / cosh(t)**2``, largest at the ``t`` nearest zero
    (the cosh form: ``1 - tanh**2`` is 0 in float64 from ``|t| = 19`` and drops the inherited error)."""
    return _library(input, "tanh", input.value.tanh(), _nearest_to_zero(input).cosh().reciprocal() ** 2)


def sigmoid(input: Bounded) -> Bounded:
    """``1 / (1 + exp(-a))``: ``|f'| = s(t) s(-t)``, largest at the ``t`` nearest zero (not
    ``s (1 - s)``: that is 0 in float64 from ``|t| = 37``, where the result is ``exp(t)``)."""
    m = _nearest_to_zero(input)
    return _library(input, "sigmoid", input.value.sigmoid(), m.sigmoid() * (-m).sigmoid())


def erf(input: Bounded) -> Bounded:
    """``erf(a)``: ``|f'| = 2/sqrt(pi) exp(-t**2)``, largest at the ``t`` nearest zero.

    float16/bfloat16 add an absolute ``8 u_float32`` (torch's CPU kernel near zero).
    """
    slope = 2 / math.sqrt(math.pi) * (-_nearest_to_zero(input) ** 2).exp()
    absolute = _ERF_LOW_PRECISION_ABSOLUTE if input.dtype in (torch.float16, torch.bfloat16) else 0.0
    return _library(input, "erf", input.value.erf(), slope, absolute=absolute)


# sup |f'| over the real line: x Phi(x) has 1.1289 at x = sqrt 2, its tanh form
# 1.1289 too, x sigmoid(x) 1.0998 (tests check these on a fine grid).
_GELU_SLOPE = 1.13
_SILU_SLOPE = 1.1


def gelu(input: Bounded, *, approximate: str = "none") -> Bounded:
    """``x Phi(x)`` (``approximate="tanh"``: its tanh form), as ``F.gelu`` (keyword-only there too).

    ``1 + erf(x/sqrt 2)`` cancels for ``x << 0``, so the function's error is
    relative to ``|result| + |x|/2`` (in both the layer and the reference).
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu(approximate={approximate!r}): 'none' or 'tanh', as F.gelu.")
    value = F.gelu(input.value, approximate=approximate)
    scale = value.abs() + input.value.abs() / 2
    result = _library(input, "gelu", value, torch.full_like(value, _GELU_SLOPE), scale=scale)
    # Kernels form x * (1 + erf(..)) before halving: no claim where 2|x| overflows the compute dtype.
    fits = _fits(2 * input.value.abs(), 2 * input.error, _compute_dtype(input.dtype))
    return dataclasses.replace(result, representable=result.representable & fits)


def silu(input: Bounded) -> Bounded:
    """``x sigmoid(x)``, as ``F.silu``: ``sup |f'| = 1.0998``.

    Where ``exp(-x)`` overflows the compute dtype the kernel returns 0: the
    whole (tiny) result may be lost there.
    """
    value = F.silu(input.value)
    overflow = math.log(torch.finfo(_compute_dtype(input.dtype)).max) - 1
    whole = value.abs() + (input.value.abs() + input.error) * math.exp(-overflow)
    lost = torch.where(input.value + input.error < -overflow, whole, 0.0)
    return _library(input, "silu", value, torch.full_like(value, _SILU_SLOPE), absolute=lost)


def softplus(input: Bounded, beta: float = 1.0, threshold: float = 20.0) -> Bounded:
    """``log(1 + exp(beta a)) / beta``, as ``F.softplus``: ``|f'| = sigmoid(beta t)``, largest at ``a + e``.

    Where ``beta a > threshold`` torch returns ``a``, off by ``log1p(exp(-beta a))/beta <
    exp(-threshold)/beta``: that is added there.
    """
    scaled = beta * input.value
    value = (scaled.clamp_min(0) + (-scaled.abs()).exp().log1p()) / beta
    reverted = torch.where(beta * (input.value + input.error) > threshold, math.exp(-threshold) / beta, 0.0)
    return _library(input, "softplus", value, (beta * (input.value + input.error)).sigmoid(), absolute=reverted)


def pow(input: Bounded, exponent: int) -> Bounded:  # noqa: A001 - mirrors torch.pow
    """``a ** exponent`` for an integer exponent.

    Repeated multiplication or a library ``pow``: ``(|n| + 3) u`` relative;
    inherited ``|n| t**(n-1)`` over the interval (infinite for ``n < 0`` where
    it contains zero).
    """
    if not isinstance(exponent, int):
        raise TypeError(f"pow(exponent={exponent!r}): an int (use exp/log for real exponents)")
    if exponent == 0:
        return dataclasses.replace(input, value=torch.ones_like(input.value), error=torch.zeros_like(input.error))
    n = exponent
    value = input.value**n
    lost = 0.0
    if n > 0:
        slope = n * (input.value.abs() + input.error) ** (n - 1)
    else:
        nearest = _nearest_to_zero(input)
        slope = torch.where(nearest > 0, -n * nearest.clamp_min(1e-300) ** (n - 1), math.inf)
        # 1 / t**|n|: each of the |n| products forming t**|n| may lose up to the compute dtype's
        # smallest normal to underflow, relative error tiny / |t**|n||, i.e. tiny * value**2 absolute
        # (bfloat16 t**-2 at 7e-20: t**2 is a float32 subnormal, 1% off).
        lost = -n * torch.finfo(_compute_dtype(input.dtype)).tiny * value.square()
    return _library(input, "pow", value, slope, absolute=lost, ulps=LIBRARY_ULPS["pow"] + builtins.abs(n) - 1)


# -- reductions ---------------------------------------------------------------------


def _dims(a: Bounded, dim: int | Sequence[int] | None) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(a.value.dim()))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(d % max(a.value.dim(), 1) for d in dims)


def _count(a: Bounded, dims: tuple[int, ...]) -> int:
    return math.prod(a.value.shape[d] for d in dims) if a.value.dim() else 1


def _all(mask: torch.Tensor, dims: tuple[int, ...], keepdim: bool) -> torch.Tensor:
    if not dims or mask.dim() == 0:
        return mask.clone()
    return (~mask).sum(dims, keepdim=keepdim) == 0


def _reduce(t: torch.Tensor, op: str, dims: tuple[int, ...], keepdim: bool) -> torch.Tensor:
    if t.dim() == 0:
        return t.clone()
    return getattr(t, op)(dims, keepdim=keepdim)


def _accumulated(value, error, representable, magnitude, dtype, device) -> Bounded:
    """A result accumulated in ``accumulation_dtype(dtype)``, then rounded once to ``dtype``."""
    accumulation = accumulation_dtype(dtype)
    representable = representable & _fits(magnitude, error, accumulation)
    if accumulation != dtype:
        error = error + unit_roundoff(dtype) * (value.abs() + error)
    return _finish(value, error, representable, dtype, device)


def sum(input: Bounded, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Bounded:  # noqa: A001
    """``a.sum(dim, keepdim)`` (all elements by default).

    Higham (4.4): within ``gamma(n-1) sum|a|`` in any order, accumulated in
    ``accumulation_dtype``; then one rounding to the working dtype.
    """
    dims = _dims(input, dim)
    n = _count(input, dims)
    magnitude = _reduce(input.value.abs(), "sum", dims, keepdim)
    error = _gamma_both(n - 1, accumulation_dtype(input.dtype)) * magnitude + _reduce(input.error, "sum", dims, keepdim)
    error = error + _underflow(n, input.dtype)
    return _accumulated(
        _reduce(input.value, "sum", dims, keepdim), error, _all(input.representable, dims, keepdim), magnitude,
        input.dtype, input.device,
    )


def mean(input: Bounded, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Bounded:
    """``a.mean(dim, keepdim)`` (all elements by default; NaN over nothing, as torch).

    The sum's bound (Higham (4.4)) divided by ``n``, one more rounding for the
    division, in ``accumulation_dtype``; then one rounding to the working dtype.
    """
    dims = _dims(input, dim)
    n = _count(input, dims)
    value = _reduce(input.value, "mean", dims, keepdim)
    if n == 0:
        return Bounded(value, torch.zeros_like(value), torch.ones_like(value, dtype=torch.bool), input.dtype, input.device)
    magnitude = _reduce(input.value.abs(), "sum", dims, keepdim)
    error = _gamma_both(n, accumulation_dtype(input.dtype)) * magnitude / n
    error = error + _reduce(input.error, "mean", dims, keepdim)
    error = error + _underflow(n, input.dtype)
    return _accumulated(value, error, _all(input.representable, dims, keepdim), magnitude, input.dtype, input.device)


def var(input: Bounded, dim: int | Sequence[int] | None = None, *, correction: int = 1,
        keepdim: bool = False) -> Bounded:
    """``a.var(dim, correction=..., keepdim=...)``: ``correction=0`` biased, ``1`` unbiased.

    Two-pass and Welford updates alike (Chan, Golub & LeVeque 1983; Higham
    sec. 1.9, Problem 1.10) stay within ``gamma(4n + 8) sum (|x| + |mean|)**2 / (n - c)``
    (the condition-number form ``n u kappa S`` is below it).  Inherited:
    ``(2 sum |x - mean| e + sum e**2) / (n - c)``.  No claim where ``n <= c``.
    """
    dims = _dims(input, dim)
    n = _count(input, dims)
    dof = n - correction
    if n == 0 or dof <= 0:
        _note(f"bound: no claim for a variance over {n} element(s) with correction {correction}")
        value = _reduce(input.value, "sum", dims, keepdim) * math.nan
        no_claim = torch.zeros_like(value, dtype=torch.bool)
        return Bounded(value, torch.full_like(value, math.inf), no_claim, input.dtype, input.device)
    with warnings.catch_warnings():  # an empty batch: torch warns about the 0/0 count, the result is empty
        warnings.simplefilter("ignore", UserWarning)
        scalar = not input.value.dim()
        value = input.value * math.nan if scalar else input.value.var(dims, correction=correction, keepdim=keepdim)
    centre = input.value.mean(dims, keepdim=True)
    magnitude = _reduce((input.value.abs() + centre.abs()) ** 2, "sum", dims, keepdim)
    inherited = _reduce(2 * (input.value - centre).abs() * input.error + input.error**2, "sum", dims, keepdim)
    error = (_gamma_both(4 * n + 8, accumulation_dtype(input.dtype)) * magnitude + inherited) / dof
    error = error + _underflow(n, input.dtype)
    return _accumulated(value, error, _all(input.representable, dims, keepdim), magnitude, input.dtype, input.device)


def std(input: Bounded, dim: int | Sequence[int] | None = None, *, correction: int = 1,
        keepdim: bool = False) -> Bounded:
    """``a.std(...)`` = ``sqrt(var(...))`` (see ``var`` and ``sqrt``)."""
    return sqrt(var(input, dim, correction=correction, keepdim=keepdim))


def amax(input: Bounded, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Bounded:
    """``a.amax(dim, keepdim)``: exact; 1-Lipschitz in the largest input error."""
    dims = _dims(input, dim)
    if input.value.dim() and any(input.value.shape[d] == 0 for d in dims):
        # torch refuses the max of nothing; its identity, -inf, makes softmax over an empty dim empty, as torch's.
        shape = _reduce(input.value, "sum", dims, keepdim)
        none_left_out = torch.ones_like(shape, dtype=torch.bool)
        empty = torch.full_like(shape, -math.inf)
        return Bounded(empty, torch.zeros_like(shape), none_left_out, input.dtype, input.device)
    return Bounded(
        _reduce(input.value, "amax", dims, keepdim), _reduce(input.error, "amax", dims, keepdim),
        _all(input.representable, dims, keepdim), input.dtype, input.device,
    )


def amin(input: Bounded, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Bounded:
    """``a.amin(dim, keepdim)``: exact; 1-Lipschitz in the largest input error."""
    return -amax(-input, dim, keepdim)


def logsumexp(input: Bounded, dim: int | Sequence[int], keepdim: bool = False) -> Bounded:
    """``torch.logsumexp(a, dim, keepdim)``: ``m + log(sum(exp(a - m)))``, ``m = amax``.

    Bounded by composing the steps as torch's kernel runs them (each rounds
    in the working dtype), which is the analysis of Blanchard, Higham & Mary,
    "Accurate computation of the log-sum-exp and softmax functions", IMA J.
    Numer. Anal. 41 (2021), sec. 2-3.
    """
    top = amax(input, dim, keepdim=True)
    top = where(top.value.isinf(), 0.0, top)  # torch zeroes an infinite shift
    total = log(sum(exp(input - top), dim, keepdim=keepdim))
    return total + (top if keepdim else top.map(lambda t: t.squeeze(_dims(input, dim)) if t.dim() else t))


# -- fused composites: evaluated in the accumulation dtype, rounded once --------------


def _in_compute_dtype(a: Bounded) -> Bounded:
    return dataclasses.replace(a, dtype=_compute_dtype(a.dtype))


def softmax(input: Bounded, dim: int, *, dtype: torch.dtype | None = None) -> Bounded:
    """``F.softmax(input, dim, dtype=dtype)`` = ``exp(a - max) / sum(exp(a - max))``.

    torch's kernels compute it in the accumulation dtype and round once;
    bounded by composing the steps (Blanchard, Higham & Mary 2021, sec. 4),
    with one extra rounding for kernels that multiply by ``1/sum``.  ``dim`` is
    required (torch's implicit choice is deprecated); ``dtype`` casts the input
    first, as torch does.
    """
    input = input if dtype is None else cast(input, dtype)
    x = _in_compute_dtype(input)
    shifted = exp(x - amax(x, dim, keepdim=True))
    out = divide(shifted, sum(shifted, dim, keepdim=True))
    out = out._rounded(out.value, out.error, out.representable)  # times 1/sum: one more rounding
    return cast(out, input.dtype)


def log_softmax(input: Bounded, dim: int, *, dtype: torch.dtype | None = None) -> Bounded:
    """``F.log_softmax(input, dim, dtype=dtype)`` = ``(a - max) - log(sum(exp(a - max)))`` (BHM 2021, sec. 4).

    Composed with every step rounded in the working dtype: torch's CPU
    bfloat16 kernel rounds the sum before the log (log_softmax of
    [-12.8, 1.86, 17.9, 6.78] gives exactly 0 at the maximum, not -1.5e-5).
    ``dim`` and ``dtype`` as in ``softmax``.
    """
    input = input if dtype is None else cast(input, dtype)
    shifted = input - amax(input, dim, keepdim=True)
    return shifted - log(sum(exp(shifted), dim, keepdim=True))


def _normalized_dims(a: Bounded, normalized_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(normalized_shape) if not isinstance(normalized_shape, int) else (normalized_shape,)
    if tuple(a.value.shape[a.value.dim() - len(shape):]) != shape:
        raise ValueError(f"normalized_shape {shape} is not the trailing shape of {tuple(a.value.shape)}")
    return tuple(range(a.value.dim() - len(shape), a.value.dim()))


def layer_norm(input: Bounded, normalized_shape: Sequence[int], weight: Bounded | None = None,
               bias: Bounded | None = None, eps: float = 1e-5) -> Bounded:
    """``F.layer_norm``: ``(a - mean) / sqrt(var + eps) * weight + bias`` (biased variance).

    Composed from ``mean``, ``var``, ``rsqrt`` in the accumulation dtype and
    rounded once.  Kernels fold it into ``a * rstd - mean * rstd``: that
    rounds ``|a| rstd`` and ``|mean| rstd`` separately, one ``u`` each, added.
    """
    dims = _normalized_dims(input, normalized_shape)
    x = _in_compute_dtype(input)
    centre = mean(x, dims, keepdim=True)
    rstd = rsqrt(var(x, dims, correction=0, keepdim=True) + eps)
    out = (x - centre) * rstd
    folded = unit_roundoff(x.dtype) * (x.value.abs() + centre.value.abs()) * (rstd.value + rstd.error)
    out = dataclasses.replace(out, error=out.error + folded)
    if weight is not None:
        out = out * _in_compute_dtype(weight)
    if bias is not None:
        out = out + _in_compute_dtype(bias)
    out = dataclasses.replace(out, representable=out.representable & _welford_fits(x, dims, out.value))
    return cast(out, input.dtype)


def rms_norm(input: Bounded, normalized_shape: Sequence[int], weight: Bounded | None = None,
             eps: float | None = None) -> Bounded:
    """``F.rms_norm``: ``a / sqrt(mean(a**2) + eps) * weight``.

    ``eps=None`` is the ``finfo(...).eps`` of the dtype torch computes in
    (float32 for float16/bfloat16 inputs: torch upcasts before choosing it).

    The normalization is composed in the accumulation dtype and rounded once
    (torch upcasts too); torch multiplies by ``weight`` after that rounding, in
    the working dtype (a fused kernel rounds less: within this bound).
    """
    dims = _normalized_dims(input, normalized_shape)
    x = _in_compute_dtype(input)
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    out = cast(x * rsqrt(mean(x**2, dims, keepdim=True) + eps), input.dtype)
    return out if weight is None else out * weight



def _welford_fits(x: Bounded, dims: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Where the statistics over ``dims`` cannot overflow ``x``'s dtype (see ``layer_norm``)."""
    if not x.value.numel() or not dims:
        return torch.ones_like(like, dtype=torch.bool)
    # Welford's (CPU) partial terms (x - mean)(x - mean') reach 4 max|x|^2 each:
    # no claim where n of them may overflow the compute dtype.
    n = math.prod(x.value.shape[d] for d in dims)
    peak = x.value.abs().amax(dim=dims, keepdim=True)
    return (4 * n * peak.square() <= torch.finfo(x.dtype).max).expand_as(like)


def batch_norm(input: Bounded, running_mean: Bounded | None = None, running_var: Bounded | None = None,
               weight: Bounded | None = None, bias: Bounded | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Bounded:
    """``F.batch_norm`` over channel dim 1: ``(a - mean) / sqrt(var + eps) * weight + bias``, with
    the batch's statistics over every other dim (biased variance) when ``training``, else the
    running ones.  ``momentum`` only updates the running statistics, which torch does in place
    and no output depends on: taken for torch's argument order, unused.

    torch's CPU kernel folds it into ``a * alpha + beta`` per channel (``alpha = weight /
    sqrt(var + eps)``, ``beta = bias - mean * alpha``) in the accumulation dtype and rounds once;
    in training it first stores the batch mean and ``1/sqrt(var + eps)`` in the parameters'
    dtype (``weight``'s, else ``a``'s): in bfloat16, ``u |mean| alpha`` is hundreds of ulps of an
    output whose mean dwarfs its spread.
    """
    if input.value.dim() < 2:
        raise ValueError(f"batch_norm: input of shape {tuple(input.value.shape)} has no channel dim 1 (N, C, ...)")
    x = _in_compute_dtype(input)
    per_channel = (1, -1) + (1,) * (input.value.dim() - 2)

    def channel(p: Bounded) -> Bounded:
        return _in_compute_dtype(p).map(lambda t: t.reshape(per_channel))

    if training:
        dims = (0, *range(2, input.value.dim()))
        stored = weight.dtype if weight is not None else input.dtype
        centre = mean(x, dims, keepdim=True)
        rstd = rsqrt(var(x, dims, correction=0, keepdim=True) + eps)
        # Stored in the parameters' dtype, read back exactly (bfloat16 -> float32 widens).
        centre, rstd = (dataclasses.replace(cast(t, stored), dtype=x.dtype) for t in (centre, rstd))
        fits = _welford_fits(x, dims, x.value)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm(training=False) needs running_mean and running_var")
        centre, rstd = channel(running_mean), rsqrt(channel(running_var) + eps)
        fits = torch.ones_like(x.value, dtype=torch.bool)
    alpha = rstd if weight is None else rstd * channel(weight)
    out = (x - centre) * alpha
    # a * alpha and mean * alpha round separately (as in layer_norm's fold).
    folded = unit_roundoff(x.dtype) * (x.value.abs() + centre.value.abs()) * (alpha.value.abs() + alpha.error)
    out = dataclasses.replace(out, error=out.error + folded, representable=out.representable & fits)
    if bias is not None:
        out = out + channel(bias)
    return cast(out, input.dtype)


def instance_norm(input: Bounded, running_mean: Bounded | None = None, running_var: Bounded | None = None,
                  weight: Bounded | None = None, bias: Bounded | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Bounded:
    """``F.instance_norm``: each sample's own statistics per channel (the running ones where
    ``use_input_stats=False``).  torch computes it as ``batch_norm`` of ``a`` viewed as
    ``(1, N * C, ...)``, ``weight``, ``bias`` and the running statistics repeated N times;
    ``momentum`` as in ``batch_norm`` (unused)."""
    if input.value.dim() < 3:
        raise ValueError(f"instance_norm: input of shape {tuple(input.value.shape)} is not (N, C, L, ...)")
    if not use_input_stats and (running_mean is None or running_var is None):
        raise ValueError("instance_norm(use_input_stats=False) needs running_mean and running_var")
    n, c = input.value.shape[:2]
    flat = input.map(lambda t: t.reshape(1, n * c, *t.shape[2:]))
    repeated = (None if p is None else p.map(lambda t: t.repeat(n)) for p in (running_mean, running_var, weight, bias))
    out = batch_norm(flat, *repeated, training=use_input_stats, eps=eps)
    return out.map(lambda t: t.reshape(input.value.shape))

# -- products and lookups -------------------------------------------------------------


def _flushable(a: Bounded) -> Bounded:
    """``a`` with the magnitude of its elements subnormal in the accumulation dtype added to their error.

    Product kernels may read such operands as zero (oneDNN's CPU bfloat16 conv2d
    does: 9.3e-39 * 4.6e17 gave 0, exact 4.3e-21), each costing ``|x| |w|``.
    float16's subnormals are normal in float32: no allowance there.
    """
    subnormal = a.value.abs() < torch.finfo(accumulation_dtype(a.dtype)).tiny
    return dataclasses.replace(a, error=a.error + torch.where(subnormal, a.value.abs(), 0.0))  # no inf * 0 = NaN


def _product_error(magnitude: torch.Tensor, n: int, dtype: torch.dtype, device: str, kind: str) -> torch.Tensor:
    """Higham (3.5): ``gamma(n) |x|^T |y|`` in the accumulation dtype, plus TF32 input rounding on CUDA."""
    error = _gamma_both(n, accumulation_dtype(dtype)) * magnitude
    if device == "cuda" and dtype == torch.float32:
        u_inputs = _reduced_float32_inputs(kind)
        error = error + (2 * u_inputs + u_inputs**2) * magnitude  # both factors rounded
    return error


def _reduced_float32_inputs(kind: str) -> float:
    """The unit roundoff CUDA float32 products round their inputs to (0: none)."""
    if kind == "conv":
        return 2.0**-11 if torch.backends.cudnn.allow_tf32 else 0.0
    precision = torch.get_float32_matmul_precision()
    return {"highest": 0.0, "high": 2.0**-11, "medium": 2.0**-8}.get(precision, 2.0**-8)


def matmul(input: Bounded, other: Bounded) -> Bounded:
    """``torch.matmul(a, b)`` (batched, broadcasting, 1-D as torch).

    Each output is a dot product of length ``n``: within ``gamma(n) |a| @ |b|``
    (Higham (3.5)) accumulated in ``accumulation_dtype``, then one rounding;
    inherited ``a.error @ (|b| + b.error) + |a| @ b.error``.
    """
    input, other = _flushable(input), _flushable(other)
    n = input.value.shape[-1]
    magnitude = input.value.abs() @ other.value.abs()
    device = _device(input, other)
    error = _product_error(magnitude, n, input.dtype, device, "matmul")
    error = error + input.error @ (other.value.abs() + other.error) + input.value.abs() @ other.error
    error = error + _underflow(2 * n, input.dtype)
    bad = (~input.representable).double() @ torch.ones_like(other.value)
    bad = bad + torch.ones_like(input.value) @ (~other.representable).double()
    # Partial sums never exceed the magnitude; a layer may round the product
    # to the working dtype before using it, so it must fit there too.
    representable = (bad == 0) & _fits(magnitude, error, input.dtype)
    return _accumulated(input.value @ other.value, error, representable, magnitude, input.dtype, device)


def scaled_dot_product_attention(query: Bounded, key: Bounded, value: Bounded, attn_mask: torch.Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, *, scale: float | None = None,
                                 enable_gqa: bool = False) -> Bounded:
    """``F.scaled_dot_product_attention(query, key, value, scale=..., enable_gqa=...)``.

    ``softmax(query @ key.mT * scale) @ value`` composed from the operations
    above, plus what torch's kernels do differently: the math backend scales
    query and key by ``sqrt(scale)`` each (two more roundings of
    ``|q| @ |k|.mT * scale``); flash kernels accumulate ``exp(s - max) @ value``
    and divide by the sum last, so those partial sums must fit too (else no claim).

    ``is_causal``: query ``i`` sees keys ``0..i`` (torch's top-left alignment),
    bounded row by row on those keys alone: a masked score's ``exp(-inf) = 0``
    is exact, while a ``-inf`` leaf would mark the row as overflowing.
    ``attn_mask`` and ``dropout_p`` are taken in torch's order but not modelled.
    """
    if attn_mask is not None or dropout_p != 0:
        raise ValueError(
            "scaled_dot_product_attention: attn_mask and dropout_p are not modelled; check dropout in eval "
            "mode (dropout_p=0), pass is_causal=True for a causal mask, and bound another mask query by "
            "query on the keys it sees (slices, not -inf scores)"
        )
    if enable_gqa and key.shape[-3] != query.shape[-3]:  # grouped-query attention: torch repeats key/value heads
        repeats = query.shape[-3] // key.shape[-3]
        key, value = (t.map(lambda v: v.repeat_interleave(repeats, dim=-3)) for t in (key, value))
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    if is_causal and query.shape[-2] and key.shape[-2]:
        seen = [builtins.min(i + 1, key.shape[-2]) for i in range(query.shape[-2])]
        rows = [scaled_dot_product_attention(query[..., i : i + 1, :], key[..., :s, :], value[..., :s, :], scale=scale)
                for i, s in enumerate(seen)]
        return Bounded(*(torch.cat([getattr(r, f) for r in rows], -2) for f in ("value", "error", "representable")),
                       rows[0].dtype, rows[0].device)
    scores = query @ key.mT * scale
    compute = _compute_dtype(query.dtype)
    rescaled = 2 * unit_roundoff(compute) * (query.value.abs() @ key.value.abs().mT) * scale
    scores = dataclasses.replace(scores, error=scores.error + rescaled)
    out = softmax(scores, -1) @ value
    weights = (scores.value - scores.value.amax(-1, keepdim=True)).exp() if scores.value.numel() else scores.value
    unnormalized = weights @ value.value.abs()
    return dataclasses.replace(out, representable=out.representable & (unnormalized <= torch.finfo(query.dtype).max))


def einsum(equation: str, *operands: Bounded) -> Bounded:
    """``torch.einsum(equation, *operands)``: a sum of products of ``k`` factors.

    Each output sums ``n`` products: within ``gamma(n + k - 2) einsum(|operands|)``
    (Higham (3.5) with ``k - 1`` roundings per product); inherited by the
    telescoping sum ``sum_i einsum(|x_1| + e_1, ..., e_i, |x_{i+1}|, ...)``.
    """
    operands = tuple(_flushable(o) for o in operands)
    values = [o.value for o in operands]
    value = torch.einsum(equation, *values)
    magnitude = torch.einsum(equation, *[v.abs() for v in values])
    sizes: dict[str, int] = {}
    for term, v in zip(equation.split("->")[0].split(","), values):
        sizes.update(zip(term.strip().replace("...", ""), v.shape[v.dim() - len(term.strip().replace("...", "")):]))
    output = equation.split("->")[1] if "->" in equation else ""
    n = math.prod(size for letter, size in sizes.items() if letter not in output)
    device = _device(*operands)
    error = _product_error(magnitude, n + len(operands) - 2, operands[0].dtype, device, "matmul")
    error = error + _underflow(2 * n, operands[0].dtype)
    for i, o in enumerate(operands):
        factors = [p.value.abs() + p.error for p in operands[:i]] + [o.error] + [p.value.abs() for p in operands[i + 1:]]
        error = error + torch.einsum(equation, *factors)
    bad = torch.zeros_like(value)  # how many unrepresentable inputs each output depends on
    for i, o in enumerate(operands):
        factors = [torch.ones_like(p.value) for p in operands]
        factors[i] = (~o.representable).double()
        bad = bad + torch.einsum(equation, *factors)
    representable = (bad == 0) & _fits(magnitude, error, operands[0].dtype)
    return _accumulated(value, error, representable, magnitude, operands[0].dtype, device)


def linear(input: Bounded, weight: Bounded, bias: Bounded | None = None) -> Bounded:
    """``F.linear(input, weight, bias)`` = ``input @ weight.mT + bias``, ``weight`` of shape
    ``(out_features, in_features)`` as ``nn.Linear.weight``.  A weight stored ``(in, out)``
    (*Dive into Deep Learning*'s ``X @ W + b``) is spelled ``tol.matmul(x, w) + b``.

    Each output is a dot product of length ``n = in`` (``n + 1`` with the bias):
    within ``gamma(n + 1) * (|x| @ |weight.mT| + |bias|)`` (Higham (3.5)) in the
    accumulation dtype, plus what the inputs' own errors contribute.  torch may
    round ``x @ weight.mT`` before adding the bias (``F.linear`` on some inputs
    and devices, a layer writing ``x @ w.T + b``): one more rounding of
    ``|x @ weight.mT|`` in low precision.
    """
    if weight.value.dim() != 2 or weight.shape[-1] != input.shape[-1]:
        raise ValueError(
            f"linear: weight of shape {tuple(weight.shape)} does not take input of shape {tuple(input.shape)}: "
            f"weight is (out_features, in_features), as F.linear's and nn.Linear.weight; "
            f"for a weight stored (in, out) write tol.matmul(x, w) + b"
        )
    input, weight = _flushable(input), _flushable(weight.mT)
    n = input.value.shape[-1]
    magnitude = input.value.abs() @ weight.value.abs()
    product = input.value @ weight.value
    value = product
    inherited = input.error @ (weight.value.abs() + weight.error) + input.value.abs() @ weight.error
    # Each output depends on a whole row of x and a whole column of weight.
    representable = input.representable.all(-1, keepdim=True) & weight.representable.all(0)
    if bias is not None:
        magnitude = magnitude + bias.value.abs()
        value = value + bias.value
        inherited = inherited + bias.error
        representable = representable & bias.representable
        n += 1
    dtype = input.dtype
    device = _device(input, weight, *([bias] if bias is not None else []))
    error = _product_error(magnitude, n, dtype, device, "matmul") + inherited + _underflow(2 * n, dtype)
    if accumulation_dtype(dtype) != dtype:
        error = error + unit_roundoff(dtype) * product.abs()
    # Partial sums never exceed the sum of magnitudes; every partial result
    # must fit the working dtype (x @ weight may be rounded to it first).
    representable = representable & _fits(magnitude, error, dtype)
    return _accumulated(value, error, representable, magnitude, dtype, device)


def _conv(conv: Callable[..., torch.Tensor], terms: int, x: Bounded, weight: Bounded, bias: Bounded | None,
          *, working_terms: int = 0, **options) -> Bounded:
    """``conv(x, weight, bias, **options)``, each output a dot product of at most ``terms`` products,
    of which partial sums over ``working_terms`` are added in the working dtype."""
    x, weight = _flushable(x), _flushable(weight)
    n = terms
    magnitude = conv(x.value.abs(), weight.value.abs(), **options)
    value = conv(x.value, weight.value, **options)
    inherited = conv(x.error, weight.value.abs() + weight.error, **options) + conv(x.value.abs(), weight.error, **options)
    bad = conv((~x.representable).double(), torch.ones_like(weight.value), **options)
    representable = (bad == 0) & bool(weight.representable.all())
    shape = (-1,) + (1,) * (weight.value.dim() - 2)
    if bias is not None:
        magnitude = magnitude + bias.value.abs().reshape(shape)
        value = value + bias.value.reshape(shape)
        inherited = inherited + bias.error.reshape(shape)
        representable = representable & bool(bias.representable.all())
        n += 1
    device = _device(x, weight)
    error = _product_error(magnitude, n, x.dtype, device, "conv") + inherited + _underflow(2 * n, x.dtype)
    if working_terms and accumulation_dtype(x.dtype) != x.dtype:
        error = error + gamma(working_terms, x.dtype) * magnitude
    representable = representable & _fits(magnitude, error, x.dtype)
    return _accumulated(value, error, representable, magnitude, x.dtype, device)


def conv1d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0, dilation=1,
           groups=1) -> Bounded:
    """``F.conv1d``: each output is a dot product of length ``C_in/groups * kernel`` (+1 with the bias).

    Bound ``gamma(n) * conv(|x|, |weight|)`` (Higham (3.5)); TF32 on CUDA when cuDNN allows it.
    """
    terms = math.prod(weight.value.shape[1:])
    return _conv(F.conv1d, terms, input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv2d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0, dilation=1,
           groups=1) -> Bounded:
    """``F.conv2d``: as ``conv1d``, with ``n = C_in/groups * kh * kw``."""
    terms = math.prod(weight.value.shape[1:])
    return _conv(F.conv2d, terms, input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv3d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0, dilation=1,
           groups=1) -> Bounded:
    """``F.conv3d``: as ``conv1d``, with ``n = C_in/groups * kd * kh * kw``."""
    terms = math.prod(weight.value.shape[1:])
    return _conv(F.conv3d, terms, input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _conv_transpose(conv: Callable[..., torch.Tensor], x: Bounded, weight: Bounded, bias: Bounded | None,
                    groups: int, **options) -> Bounded:
    # weight is (C_in, C_out/groups, *kernel): an output sums at most C_in/groups * kernel products.
    # torch's CPU float16/bfloat16 kernels round each tap's column (a dot product over C_in) to the
    # working dtype and add the taps there (col2im): fp16 conv_transpose1d was 3.7x a float32-accumulated bound.
    taps = math.prod(weight.value.shape[2:])
    return _conv(conv, weight.value.shape[0] // groups * taps, x, weight, bias, working_terms=taps, groups=groups,
                 **options)


def conv_transpose1d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0,
                     output_padding=0, groups=1, dilation=1) -> Bounded:
    """``F.conv_transpose1d`` (``weight`` of shape ``(C_in, C_out/groups, k)``): each output sums
    at most ``C_in/groups * k`` products, as ``conv1d``; in float16/bfloat16 the ``k`` taps are
    added in the working dtype (``gamma_work(k) * conv_transpose(|x|, |w|)``)."""
    return _conv_transpose(F.conv_transpose1d, input, weight, bias, groups, stride=stride, padding=padding,
                           output_padding=output_padding, dilation=dilation)


def conv_transpose2d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0,
                     output_padding=0, groups=1, dilation=1) -> Bounded:
    """``F.conv_transpose2d``: as ``conv_transpose1d``, with ``kh * kw`` taps."""
    return _conv_transpose(F.conv_transpose2d, input, weight, bias, groups, stride=stride, padding=padding,
                           output_padding=output_padding, dilation=dilation)


def conv_transpose3d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0,
                     output_padding=0, groups=1, dilation=1) -> Bounded:
    """``F.conv_transpose3d``: as ``conv_transpose1d``, with ``kd * kh * kw`` taps."""
    return _conv_transpose(F.conv_transpose3d, input, weight, bias, groups, stride=stride, padding=padding,
                           output_padding=output_padding, dilation=dilation)


def embedding(input: torch.Tensor, weight: Bounded) -> Bounded:
    """``F.embedding(input, weight)``: the rows ``input`` indexes, exactly.

    ``padding_idx`` changes only gradients; for ``max_norm`` renormalize the
    rows first (``tol.where`` on their norms) and look those up.
    """
    input = input.detach().cpu()
    return weight.map(lambda t: t[input])


# -- the check ------------------------------------------------------------------------


class ToleranceExceeded(AssertionError):
    """A computed tensor is further from the exact result than its error bound allows."""


def assert_within_bound(actual: torch.Tensor, expected: Bounded, *, what: str = "output") -> None:
    """Fail unless ``actual`` is within ``SLACK * expected.error`` of the exact value.

    Checked where ``expected.representable`` and the bound is finite: there
    ``actual`` must also be finite.  Where the exact value is NaN (the mean
    of an empty tensor), ``actual`` must be NaN too.  Elements with an
    infinite bound are no claim, recorded as a Hypothesis event.
    """
    __tracebackhide__ = True
    if tuple(actual.shape) != tuple(expected.value.shape):
        raise ToleranceExceeded(
            f"{what} has shape {tuple(actual.shape)}, the reference {tuple(expected.value.shape)}"
        )
    got = actual.detach().to(device="cpu", dtype=torch.float64)
    want = expected.value
    bound = SLACK * torch.nan_to_num(expected.error, nan=math.inf)
    unbounded = expected.representable & ~bound.isfinite()
    if bool(unbounded.any()):
        _note(f"bound: infinite for some elements in {str(expected.dtype).removeprefix('torch.')} (no claim there)")
    # A NaN the exact computation owes (the mean of an empty tensor) must be
    # matched; a NaN from overflow sits where no claim is made anyway.
    nan_expected = want.isnan() & expected.representable & ~unbounded
    checked = expected.representable & ~want.isnan() & ~unbounded
    excess = torch.where(checked, (got - want).abs() - bound, torch.zeros_like(got))
    # NaN - x is NaN: count a non-finite result where a finite one is owed as a failure.
    excess = torch.where(checked & ~got.isfinite(), math.inf, excess)
    excess = torch.where(nan_expected & ~got.isnan(), math.inf, excess)
    if got.numel():
        claims.compared(
            int((checked | nan_expected).sum()),
            vacant_because=f"{what}: every element beyond the range or the bound of {str(expected.dtype).removeprefix('torch.')}",
        )
    bad = excess > 0
    if not bad.any():
        return
    worst = int(excess.flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), got.shape)) if got.dim() else ()
    raise ToleranceExceeded(
        f"{what}: {int(bad.sum())} / {got.numel()} elements outside the error bound "
        f"(dtype {expected.dtype}, slack {SLACK}). Worst at index {index}: "
        f"computed {got[index].item()!r}, exact {want[index].item()!r}, "
        f"|difference| {(got[index] - want[index]).abs().item():.3g} > bound {bound[index].item():.3g}"
    )
