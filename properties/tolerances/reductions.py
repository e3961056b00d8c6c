"""Reductions: sums and means (Higham (4.4)), variance, extrema and logsumexp,
accumulated in ``accumulation_dtype`` and rounded once to the working dtype.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from properties.tolerances.elementwise import exp, log, sqrt, where
from properties.tolerances.rounding import (
    Bounded,
    accumulated,
    accumulation_dtype,
    gamma_both,
    lost_to_underflow,
    note,
)


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


def sum(input: Bounded, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Bounded:  # noqa: A001
    """``a.sum(dim, keepdim)`` (all elements by default).

    Higham (4.4): within ``gamma(n-1) sum|a|`` in any order, accumulated in
    ``accumulation_dtype``; then one rounding to the working dtype.
    """
    dims = _dims(input, dim)
    n = _count(input, dims)
    magnitude = _reduce(input.value.abs(), "sum", dims, keepdim)
    error = gamma_both(n - 1, accumulation_dtype(input.dtype)) * magnitude + _reduce(input.error, "sum", dims, keepdim)
    error = error + lost_to_underflow(n, input.dtype)
    return accumulated(
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
    error = gamma_both(n, accumulation_dtype(input.dtype)) * magnitude / n
    error = error + _reduce(input.error, "mean", dims, keepdim)
    error = error + lost_to_underflow(n, input.dtype)
    return accumulated(value, error, _all(input.representable, dims, keepdim), magnitude, input.dtype, input.device)


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
        note(f"bound: no claim for a variance over {n} element(s) with correction {correction}")
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
    error = (gamma_both(4 * n + 8, accumulation_dtype(input.dtype)) * magnitude + inherited) / dof
    error = error + lost_to_underflow(n, input.dtype)
    return accumulated(value, error, _all(input.representable, dims, keepdim), magnitude, input.dtype, input.device)


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
