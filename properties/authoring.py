"""The helpers a property author needs, one line each:

* ``layer_property``: register a check as a property (``properties.registry``).
* ``LayerCase``: the drawn example a check receives (``properties.cases``).
* ``no_claim(reason)``: this example gives the property nothing to claim (``properties.claims``).
* ``reference(case, module, x)``: the spec's exact reference, a ``Bounded`` checked to be usable.
* ``exact_output(case, module, x)``: the reference where declared, else the module's float64 twin.
* ``comparable(case)``: the layer for comparing two computations (eval mode if stochastic).
* ``forward(case, module, x)``: ``module(x)`` without autograd, RNG seeded from the example.
* ``call_layer(case, module, x)``: ``module(x)`` with autograd; an exception becomes ``LayerRaised``.
* ``call_backward(case, out, cotangent, x)``: ``out.backward(cotangent)``; an exception becomes ``LayerRaised``.
* ``LayerRaised``: the layer raised on an input its spec declares valid (a finding, not a crash).
* ``comparison_bound(canonical, expected, what=...)``: where another computation of ``canonical`` must lie.
* ``assert_same_computation(actual, other, expected, what=...)``: ``actual`` computes what ``other`` does.
* ``assert_identical(actual, other, what=...)``: bit-for-bit the same values, shape and dtype.

Numerical comparisons with a bound: ``properties.tolerances`` (``assert_within_bound``).
``float64_twin_of``, ``accumulated_moderate_limit`` and ``first_line`` are here for the
helpers above and the catalogue's own properties.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from hypothesis import currently_in_test_context, event

from properties import tolerances
from properties.cases import LayerCase
from properties.claims import no_claim
from properties.comparison import Float64Twin, agreement_bound, float64_twin
from properties.errors import SpecError
from properties.registry import layer_property
from properties.spec import spec_call
from properties.recipes import moderate_limit

__all__ = [
    "LayerCase",
    "LayerRaised",
    "assert_identical",
    "assert_same_computation",
    "call_backward",
    "call_layer",
    "comparable",
    "comparison_bound",
    "exact_output",
    "forward",
    "layer_property",
    "no_claim",
    "reference",
]


def reference(case: LayerCase, module: torch.nn.Module, x: torch.Tensor) -> tolerances.Bounded:
    """The spec's exact reference for this module and input, checked to be usable.

    It receives what the layer receives (``case.arguments``), tensors as exact ``Bounded`` values.
    """
    args, kwargs = case.arguments(x)
    args, kwargs = [_exact(a) for a in args], {k: _exact(v) for k, v in kwargs.items()}
    with tolerances.accumulating(case.spec.accumulation):
        expected = spec_call(case.spec, "reference", case.spec.reference, module, *args, **kwargs)
    if not isinstance(expected, tolerances.Bounded):
        raise SpecError(
            f"LayerSpec {case.spec.name!r}, field 'reference' returned {type(expected).__name__}; "
            "it must return a Bounded built with properties.tolerances (exact, linear, mean, ...)."
        )
    return expected


def _exact(value: Any) -> Any:
    return tolerances.exact(value) if isinstance(value, torch.Tensor) else value


def comparable(case: LayerCase, **build: Any) -> torch.nn.Module:
    """The layer, for properties that compare two computations: in eval mode if the spec
    declares it stochastic, so that two different random masks are never compared (a
    slice has another mask than its batch; so may another layout, a compiled variant,
    a twin; the reference describes eval mode)."""
    module = case.build(**build)
    return module.eval() if case.spec.stochastic else module


def exact_output(case: LayerCase, module: torch.nn.Module, x: torch.Tensor) -> tolerances.Bounded | Float64Twin:
    """The spec's reference where it declares one, else the module's float64 twin
    (see ``properties.comparison``)."""
    return reference(case, module, x) if case.spec.reference is not None else float64_twin_of(case, module, x)


def float64_twin_of(case: LayerCase, module: torch.nn.Module, x: torch.Tensor) -> Float64Twin:
    """``module``'s float64 twin on ``x``; a twin that cannot run is a configuration error."""
    try:
        twin = float64_twin(module, x, run=case.run, seed=case.input_recipe.seed)
    except Exception as error:
        raise SpecError(
            f"LayerSpec {case.spec.name!r} declares no 'reference', so the exact output is the layer cast to "
            f"float64 (a deep copy, .to(torch.float64)); that raised {type(error).__name__}: {error}. "
            "Make the layer run in float64, or declare a 'reference'."
        ) from error
    limit = accumulated_moderate_limit(case)
    held = [t for t in (x, *module.parameters(), *module.buffers()) if t.is_floating_point() and t.numel()]
    return dataclasses.replace(twin, moderate=all(t.detach().abs().max().item() <= limit for t in held))


class LayerRaised(AssertionError):
    """The layer raised on an input its spec declares valid: a finding, reported
    by the property that ran it (``<property> failed on <layer>``)."""


def accumulated_moderate_limit(case: LayerCase) -> float:
    """``moderate_limit`` of the dtype the layer accumulates in, as its spec's ``accumulation``
    says: float32's for float16 in torch's kernels, float16's own for ``"working"``."""
    with tolerances.accumulating(case.spec.accumulation):
        return moderate_limit(tolerances.accumulation_dtype(case.dtype))


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
            f"({_described(x)}): {first_line(error)}"
        ) from error


def call_backward(case: LayerCase, out: torch.Tensor, cotangent: torch.Tensor, x: torch.Tensor) -> None:
    """``out.backward(cotangent)`` for the layer's output on ``x``; an exception becomes
    ``LayerRaised``: the layer's backward failed on an input its spec declares valid."""
    __tracebackhide__ = True
    try:
        out.backward(cotangent)
    except Exception as error:
        raise LayerRaised(
            f"{case.spec.name}: backward raised {type(error).__name__} on a valid input "
            f"({_described(x)}): {first_line(error)}"
        ) from error


def _described(x: torch.Tensor) -> str:
    return f"shape {tuple(x.shape)}, {x.dtype}, {x.device.type}{'' if x.is_contiguous() else ', non-contiguous'}"


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def forward(case: LayerCase, module: Any, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` without autograd, RNG seeded from the example (see ``call_layer``)."""
    __tracebackhide__ = True
    with torch.no_grad():
        return call_layer(case, module, x)


def comparison_bound(
    canonical: torch.Tensor, expected: tolerances.Bounded | Float64Twin, *, what: str
) -> tolerances.Bounded:
    """Where another computation of ``canonical``'s exact result must lie.

    With a reference: within twice its bound of ``canonical`` (each is within
    the bound of the exact value; different kernels may round differently).
    With the float64 twin: no farther from it than ``agreement_bound`` allows,
    a few times the canonical computation's own error plus a few ulps.
    """
    if tuple(canonical.shape) != tuple(expected.value.shape):
        raise tolerances.ToleranceExceeded(
            f"{what}: shape {tuple(canonical.shape)}, expected {tuple(expected.value.shape)}"
        )
    if isinstance(expected, Float64Twin):
        return agreement_bound(canonical, expected)
    other64 = canonical.detach().to("cpu", torch.float64)
    return tolerances.Bounded(
        torch.where(expected.value.isnan(), expected.value, other64),
        2 * expected.error,
        expected.representable & other64.isfinite(),
        expected.dtype,
    )


def assert_same_computation(
    actual: torch.Tensor, other: torch.Tensor, expected: tolerances.Bounded | Float64Twin, *, what: str
) -> None:
    """``actual`` computes what ``other`` (the canonical computation) does, by
    ``comparison_bound``: the spec's reference, or the float64 twin."""
    __tracebackhide__ = True
    bound = comparison_bound(other, expected, what=what)
    if isinstance(expected, Float64Twin) and not expected.moderate and actual.shape == bound.value.shape:
        # Beyond the moderate limit a square or a product inside may overflow, and kernels
        # differ in what follows (BatchNorm's variance: eager gives x / sqrt(inf) = 0,
        # inductor NaN): without a reference, only finite values are compared.
        overflowed = ~actual.detach().cpu().isfinite()
        if bool((overflowed & bound.representable).any()) and currently_in_test_context():
            event("comparison: inf/NaN beyond the moderate limit, not claimed without a reference")
        bound = dataclasses.replace(bound, representable=bound.representable & ~overflowed)
    tolerances.assert_within_bound(actual, bound, what=what)


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
