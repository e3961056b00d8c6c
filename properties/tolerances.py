"""Tolerances from rounding-error bounds, not from one fixed atol.

A spec's reference is written with the operations below.  Each takes and
returns a :class:`Bounded`: the exact result (computed in float64 from the same
rounded inputs and parameters, so casting up is exact), a bound on how far a
computation carried out in the working dtype may be from it, and where that
claim holds at all (no intermediate result can overflow).  The bound scales
with the magnitudes involved and the reduction length, so it stays tight for
ordinary values and does not fail on huge values or cancellation.

Standard analysis (Higham, *Accuracy and Stability of Numerical Algorithms*,
ch. 3), with unit roundoff ``u`` and ``gamma(n) = n*u / (1 - n*u)``:

* a sum of ``n`` terms is within ``gamma(n-1) * sum(|x|)`` of the exact sum in
  any summation order (pairwise and blocked orders do better);
* a dot product of length ``n`` is within ``gamma(n) * |x|^T |y|``;
* one elementwise operation adds one rounding, ``u * |result|``.

Torch accumulates float16/bfloat16 reductions in float32 and rounds once; a
bound built from the output dtype's ``u`` is still safe.  On top of the
relative terms, each operation may lose up to the dtype's smallest normal
number to underflow (flush-to-zero kernels lose that much, gradual underflow
less), which is added as an absolute term.
"""

from __future__ import annotations

import dataclasses
import math

import torch

__all__ = [
    "Bounded",
    "ToleranceExceeded",
    "accumulation_dtype",
    "assert_within_bound",
    "exact",
    "gamma",
    "linear",
    "mean",
    "multiply",
    "relu",
    "subtract",
    "add",
    "unit_roundoff",
    "SLACK",
]

# A computed result may be off by up to ``SLACK`` times the bound derived below.
# The bounds are worst cases already; the factor 2 covers the second-order
# terms the first-order propagation drops (products of two error terms) and
# the rounding of the float64 reference itself (u64 ≈ 1.1e-16, far below any
# working precision's bound).
SLACK = 2.0


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half the distance from 1.0 to the next number: float32 2**-24, float16 2**-11."""
    return torch.finfo(dtype).eps / 2


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype torch (and a correct layer) accumulates reductions of ``dtype`` in."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def gamma(n: int, dtype: torch.dtype) -> float:
    """``n*u / (1 - n*u)``: the relative error bound of ``n`` chained roundings."""
    nu = n * unit_roundoff(dtype)
    return math.inf if nu >= 1 else nu / (1 - nu)


def _underflow(n: int, dtype: torch.dtype) -> float:
    """Absolute error ``n`` operations may lose to underflow."""
    return n * torch.finfo(dtype).tiny


@dataclasses.dataclass(frozen=True)
class Bounded:
    """An exact float64 value with the error bound of computing it in ``dtype``.

    ``representable`` is False where an intermediate result of the computation
    may exceed the dtype's range (or the accumulation dtype's, for a
    reduction): there inf/NaN are legitimate and no claim is made.
    """

    value: torch.Tensor
    error: torch.Tensor
    representable: torch.Tensor
    dtype: torch.dtype

    def _rounded(self, value, error, representable) -> Bounded:
        """A new result, rounded once to ``dtype``: adds ``u * |value|``."""
        error = error + unit_roundoff(self.dtype) * (value.abs() + error)
        representable = representable & (value.abs() + error <= torch.finfo(self.dtype).max)
        return Bounded(value, error, representable, self.dtype)


def exact(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> Bounded:
    """A leaf: an input or a parameter, already rounded to ``dtype`` (no error)."""
    dtype = tensor.dtype if dtype is None else dtype
    value = tensor.detach().to(device="cpu", dtype=torch.float64)
    return Bounded(value, torch.zeros_like(value), value.isfinite(), dtype)


def add(a: Bounded, b: Bounded) -> Bounded:
    """``a + b`` (broadcasting): errors add, plus one rounding."""
    return a._rounded(a.value + b.value, a.error + b.error, a.representable & b.representable)


def subtract(a: Bounded, b: Bounded) -> Bounded:
    """``a - b`` (broadcasting): errors add, plus one rounding."""
    return a._rounded(a.value - b.value, a.error + b.error, a.representable & b.representable)


def multiply(a: Bounded, b: Bounded) -> Bounded:
    """``a * b`` (broadcasting): ``|a| b.error + a.error |b|`` plus one rounding."""
    inherited = a.value.abs() * b.error + a.error * b.value.abs() + a.error * b.error
    underflow = torch.finfo(a.dtype).tiny  # a product may underflow to zero
    return a._rounded(a.value * b.value, inherited + underflow, a.representable & b.representable)


def relu(a: Bounded) -> Bounded:
    """``max(a, 0)`` is exact and 1-Lipschitz: the error carries over unchanged."""
    return Bounded(a.value.clamp_min(0), a.error, a.representable, a.dtype)


def linear(x: Bounded, weight: Bounded, bias: Bounded | None = None) -> Bounded:
    """``x @ weight + bias`` with ``weight`` of shape ``(in, out)``.

    Each output is a dot product of length ``n = in`` (``n + 1`` with the bias):
    within ``gamma(n + 1) * (|x| @ |weight| + |bias|)``, plus what the inputs'
    own errors contribute, ``x.error @ |weight| + |x| @ weight.error``.
    """
    n = x.value.shape[-1]
    magnitude = x.value.abs() @ weight.value.abs()
    value = x.value @ weight.value
    inherited = x.error @ weight.value.abs() + x.value.abs() @ weight.error
    # Each output depends on a whole row of x and a whole column of weight.
    representable = x.representable.all(-1, keepdim=True) & weight.representable.all(0)
    if bias is not None:
        magnitude = magnitude + bias.value.abs()
        value = value + bias.value
        inherited = inherited + bias.error
        representable = representable & bias.representable
        n += 1
    dtype = x.dtype
    error = gamma(n, dtype) * magnitude + inherited + _underflow(2 * n, dtype)
    # Partial sums never exceed the sum of magnitudes.  Implementations may
    # round ``x @ weight`` to the working dtype before adding the bias
    # (MyLinear does), so every partial result must fit the working dtype,
    # not only the accumulation dtype.
    representable = representable & (magnitude + error <= torch.finfo(dtype).max)
    return Bounded(value, error, representable, dtype)


def mean(a: Bounded) -> Bounded:
    """The mean of all elements (a 0-d result; NaN for an empty tensor, as torch).

    The sum of ``N`` terms is within ``gamma(N - 1) * sum(|a|)``; dividing by
    ``N`` and rounding adds ``u * |mean|``; the inputs' errors average.
    """
    n = a.value.numel()
    if n == 0:
        nan = torch.tensor(math.nan, dtype=torch.float64)
        return Bounded(nan, torch.zeros_like(nan), torch.tensor(True), a.dtype)
    value = a.value.mean()
    magnitude = a.value.abs().sum()
    error = gamma(max(n - 1, 1), a.dtype) * magnitude / n + a.error.mean() + _underflow(n, a.dtype) / n
    representable = a.representable.all() & (magnitude <= torch.finfo(accumulation_dtype(a.dtype)).max)
    return a._rounded(value, error, representable)


class ToleranceExceeded(AssertionError):
    """A computed tensor is further from the exact result than its error bound allows."""


def assert_within_bound(actual: torch.Tensor, expected: Bounded, *, what: str = "output") -> None:
    """Fail unless ``actual`` is within ``SLACK * expected.error`` of the exact value.

    Checked where ``expected.representable``: there ``actual`` must also be
    finite.  Where the exact value is NaN (the mean of an empty tensor), ``actual``
    must be NaN too.
    """
    __tracebackhide__ = True
    if tuple(actual.shape) != tuple(expected.value.shape):
        raise ToleranceExceeded(
            f"{what} has shape {tuple(actual.shape)}, the reference {tuple(expected.value.shape)}"
        )
    got = actual.detach().to(device="cpu", dtype=torch.float64)
    want, bound = expected.value, SLACK * expected.error
    # A NaN the exact computation owes (the mean of an empty tensor) must be
    # matched; a NaN from overflow sits where no claim is made anyway.
    nan_expected = want.isnan() & expected.representable
    checked = expected.representable & ~want.isnan()
    excess = torch.where(checked, (got - want).abs() - bound, torch.zeros_like(got))
    # NaN - x is NaN: count a non-finite result where a finite one is owed as a failure.
    excess = torch.where(checked & ~got.isfinite(), math.inf, excess)
    excess = torch.where(nan_expected & ~got.isnan(), math.inf, excess)
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
