"""Helpers the properties share: the spec's reference, and comparing two outputs."""

from __future__ import annotations

from typing import Any

import torch

from properties import tolerances
from properties.errors import SpecError
from properties.runner import spec_call
from properties.strategies import LayerCase


def reference(case: LayerCase, module: torch.nn.Module, x: torch.Tensor) -> tolerances.Bounded:
    """The spec's exact reference for this module and input, checked to be usable."""
    expected = spec_call(case.spec, "reference", case.spec.reference, module, tolerances.exact(x))
    if not isinstance(expected, tolerances.Bounded):
        raise SpecError(
            f"LayerSpec {case.spec.name!r}, field 'reference' returned {type(expected).__name__}; "
            "it must return a Bounded built with properties.tolerances (exact, linear, mean, ...)."
        )
    return expected


class LayerRaised(AssertionError):
    """The layer raised on an input its spec declares valid: a finding, reported
    by the property that ran it (``<property> failed on <layer>``)."""


def call_layer(case: LayerCase, module: Any, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, RNG seeded from the example; an exception becomes ``LayerRaised``.

    The input was drawn from the spec's declared input space (or is a layout,
    dtype or device the property owes the layer), so the layer owes an output.
    """
    __tracebackhide__ = True
    try:
        return case.run(module, x)
    except Exception as error:
        name = type(module).__name__ if isinstance(module, torch.nn.Module) else case.spec.name
        raise LayerRaised(
            f"{case.spec.name}: forward ({name}) raised {type(error).__name__} on a valid input "
            f"(shape {tuple(x.shape)}, {x.dtype}, {x.device.type}{'' if x.is_contiguous() else ', non-contiguous'}): "
            f"{_first_line(error)}"
        ) from error


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def forward(case: LayerCase, module: Any, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` without autograd, RNG seeded from the example (see ``call_layer``)."""
    __tracebackhide__ = True
    with torch.no_grad():
        return call_layer(case, module, x)


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
