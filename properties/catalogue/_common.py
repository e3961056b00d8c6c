"""Helpers the properties share: the spec's reference, and comparing two outputs."""

from __future__ import annotations

import torch

from properties import tolerances
from properties.cases import LayerCase
from properties.errors import SpecError
from properties.spec import spec_call


def reference(case: LayerCase, module: torch.nn.Module, x: torch.Tensor) -> tolerances.Bounded:
    """The spec's exact reference for this module and input, checked to be usable."""
    expected = spec_call(case.spec, "reference", case.spec.reference, module, tolerances.exact(x))
    if not isinstance(expected, tolerances.Bounded):
        raise SpecError(
            f"LayerSpec {case.spec.name!r}, field 'reference' returned {type(expected).__name__}; "
            "it must return a Bounded built with properties.tolerances (exact, linear, mean, ...)."
        )
    return expected


def forward(case: LayerCase, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` without autograd, RNG seeded from the example."""
    with torch.no_grad():
        return case.run(module, x)


def assert_same_computation(
    actual: torch.Tensor, other: torch.Tensor, expected: tolerances.Bounded, *, what: str
) -> None:
    """Two computations of the same exact result agree within twice its bound.

    Each is within the bound of the exact value, so they are within twice
    the bound of each other (different kernels may round differently).
    """
    __tracebackhide__ = True
    other64 = other.detach().to("cpu", torch.float64)
    if tuple(other.shape) != tuple(expected.value.shape):
        raise tolerances.ToleranceExceeded(f"{what}: shape {tuple(other.shape)}, expected {tuple(expected.value.shape)}")
    against = tolerances.Bounded(
        torch.where(expected.value.isnan(), expected.value, other64),
        2 * expected.error,
        expected.representable & other64.isfinite(),
        expected.dtype,
    )
    tolerances.assert_within_bound(actual, against, what=what)


def assert_identical(actual: torch.Tensor, other: torch.Tensor, *, what: str) -> None:
    """Bit-for-bit the same values (NaN matching NaN), shape and dtype."""
    __tracebackhide__ = True
    if actual.shape != other.shape or actual.dtype != other.dtype:
        raise AssertionError(
            f"{what}: {tuple(actual.shape)} {actual.dtype} vs {tuple(other.shape)} {other.dtype}"
        )
    a, b = actual.detach().cpu(), other.detach().cpu()
    same = (a == b) | (a.isnan() & b.isnan())
    if not bool(same.all()):
        differ = int((~same).sum())
        raise AssertionError(f"{what}: {differ} / {a.numel()} elements differ (e.g. {a[~same][0].item()!r} vs {b[~same][0].item()!r})")
