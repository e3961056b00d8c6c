"""Elementwise operations: arithmetic (Higham (2.4): one rounding each), the
exact piecewise ones (relu, abs, clamp, where) and library functions (exp, log,
tanh, ...), each within a few units of roundoff of its result.
"""

from __future__ import annotations

import builtins
import dataclasses
import math

import torch
import torch.nn.functional as F

from properties.tolerances.rounding import (
    U64,
    Bounded,
    compute_dtype,
    device_of,
    finish,
    fits_in,
    pair,
    register_operators,
    unit_roundoff,
)

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


# -- elementwise arithmetic (Higham (2.4): one rounding each) -----------------------


def add(input, other) -> Bounded:
    """``a + b`` (broadcasting; numbers allowed): errors add, plus one rounding."""
    input, other = pair(input, other)
    return Bounded._rounded(
        dataclasses.replace(input, device=device_of(input, other)),
        input.value + other.value,
        input.error + other.error,
        input.representable & other.representable,
    )


def subtract(input, other) -> Bounded:
    """``a - b`` (broadcasting; numbers allowed): errors add, plus one rounding."""
    input, other = pair(input, other)
    return Bounded._rounded(
        dataclasses.replace(input, device=device_of(input, other)),
        input.value - other.value,
        input.error + other.error,
        input.representable & other.representable,
    )


def multiply(input, other) -> Bounded:
    """``a * b`` (broadcasting): ``|a| b.error + a.error |b| + a.error b.error``, one rounding, underflow."""
    input, other = pair(input, other)
    inherited = input.value.abs() * other.error + input.error * other.value.abs() + input.error * other.error
    underflow = torch.finfo(input.dtype).tiny  # a product may underflow to zero
    return Bounded._rounded(
        dataclasses.replace(input, device=device_of(input, other)),
        input.value * other.value,
        inherited + underflow,
        input.representable & other.representable,
    )


def divide(input, other) -> Bounded:
    """``a / b``: ``(a.error + |a/b| b.error) / (|b| - b.error)`` plus one rounding.

    Exact first-order-free bound: ``|a'/b' - a/b| = |(a' - a) - (a/b)(b' - b)| / |b'|``
    with ``|b'| >= |b| - b.error``; infinite (no claim) where ``b`` may be zero.
    """
    input, other = pair(input, other)
    quotient = input.value / other.value
    room = other.value.abs() - other.error
    inherited = torch.where(
        room > 0, (input.error + quotient.abs() * other.error) / room.clamp_min(torch.finfo(torch.float64).tiny), math.inf
    )
    inherited = torch.where((input.error == 0) & (other.error == 0), 0.0, inherited)
    return Bounded._rounded(
        dataclasses.replace(input, device=device_of(input, other)),
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
    input, other = pair(input, other)
    condition = condition.detach().cpu()
    return Bounded(
        torch.where(condition, input.value, other.value),
        torch.where(condition, input.error, other.error),
        torch.where(condition, input.representable, other.representable),
        input.dtype,
        device_of(input, other),
    )


# -- library functions --------------------------------------------------------------


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
    compute = compute_dtype(a.dtype)
    error = inherited + k * unit_roundoff(compute) * (magnitude + inherited) + k * U64 * magnitude
    error = error + absolute + torch.finfo(a.dtype).tiny
    if compute != a.dtype:
        error = error + unit_roundoff(a.dtype) * (value.abs() + error)
    return finish(value, error, a.representable, a.dtype, a.device)


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
GELU_SLOPE = 1.13
SILU_SLOPE = 1.1


def gelu(input: Bounded, *, approximate: str = "none") -> Bounded:
    """``x Phi(x)`` (``approximate="tanh"``: its tanh form), as ``F.gelu`` (keyword-only there too).

    ``1 + erf(x/sqrt 2)`` cancels for ``x << 0``, so the function's error is
    relative to ``|result| + |x|/2`` (in both the layer and the reference).
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu(approximate={approximate!r}): 'none' or 'tanh', as F.gelu.")
    value = F.gelu(input.value, approximate=approximate)
    scale = value.abs() + input.value.abs() / 2
    result = _library(input, "gelu", value, torch.full_like(value, GELU_SLOPE), scale=scale)
    # Kernels form x * (1 + erf(..)) before halving: no claim where 2|x| overflows the compute dtype.
    fits = fits_in(2 * input.value.abs(), 2 * input.error, compute_dtype(input.dtype))
    return dataclasses.replace(result, representable=result.representable & fits)


def silu(input: Bounded) -> Bounded:
    """``x sigmoid(x)``, as ``F.silu``: ``sup |f'| = 1.0998``.

    Where ``exp(-x)`` overflows the compute dtype the kernel returns 0: the
    whole (tiny) result may be lost there.
    """
    value = F.silu(input.value)
    overflow = math.log(torch.finfo(compute_dtype(input.dtype)).max) - 1
    whole = value.abs() + (input.value.abs() + input.error) * math.exp(-overflow)
    lost = torch.where(input.value + input.error < -overflow, whole, 0.0)
    return _library(input, "silu", value, torch.full_like(value, SILU_SLOPE), absolute=lost)


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
        lost = -n * torch.finfo(compute_dtype(input.dtype)).tiny * value.square()
    return _library(input, "pow", value, slope, absolute=lost, ulps=LIBRARY_ULPS["pow"] + builtins.abs(n) - 1)


# Bounded's operators + - * / ** compute with these.
register_operators(add=add, subtract=subtract, multiply=multiply, divide=divide, pow=pow)
