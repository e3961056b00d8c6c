"""The property catalogue: each property written once, run on every layer whose
spec declares the facts it ``requires``.

A property receives a drawn ``LayerCase`` and raises ``AssertionError`` (or a
subclass) naming what is wrong.  Where an example gives the property nothing
to claim (an intermediate overflows, the input is empty), it returns after
recording a Hypothesis ``event`` so the statistics show how often that happened.
"""

from __future__ import annotations

import torch
from hypothesis import event

from properties import tolerances
from properties.registry import layer_property
from properties.runner import spec_call
from properties.strategies import LayerCase

__all__ = [
    "gradient_flow",
    "matches_equivalents",
    "matches_reference",
    "nonnegative_output",
    "zero_mean_after_centering",
]


def _reference(case: LayerCase, module: torch.nn.Module, x: torch.Tensor) -> tolerances.Bounded:
    """The spec's reference for this module and input, checked to be usable."""
    expected = spec_call(case.spec, "reference", case.spec.reference, module, tolerances.exact(x))
    if not isinstance(expected, tolerances.Bounded):
        from properties.errors import SpecError

        raise SpecError(
            f"LayerSpec {case.spec.name!r}, field 'reference' returned {type(expected).__name__}; "
            "it must return a Bounded built with properties.tolerances (exact, linear, mean, ...)."
        )
    return expected


@layer_property(family="equivalence", requires=("reference",))
def matches_reference(case: LayerCase) -> None:
    """The output is within the rounding-error bound of the spec's exact reference."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    with torch.no_grad():
        out = case.run(module, x)
        expected = _reference(case, module, x)
    tolerances.assert_within_bound(out, expected, what=f"{case.spec.name} output vs its float64 reference")


@layer_property(family="equivalence", requires=("equivalents", "reference"))
def matches_equivalents(case: LayerCase) -> None:
    """The layer computes the same as each declared equivalent built from its parameters
    (MyLinear = nn.Linear + ReLU with the weight transposed)."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    with torch.no_grad():
        out = case.run(module, x)
        expected = _reference(case, module, x)
        for name, make in case.spec.equivalents.items():
            twin = spec_call(case.spec, "equivalents", make, module)
            twin_out = case.run(twin, x)
            # Each is within the bound of the exact result, so they are within
            # twice the bound of each other.
            against = tolerances.Bounded(
                out.detach().to("cpu", torch.float64),
                2 * expected.error,
                expected.representable & out.detach().cpu().isfinite(),
                expected.dtype,
            )
            tolerances.assert_within_bound(twin_out, against, what=f"{name} vs {case.spec.name}")


@layer_property(family="algebra", requires=("centering", "reference"))
def zero_mean_after_centering(case: LayerCase) -> None:
    """The mean of the output over all elements is zero, within the output's error bound."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    with torch.no_grad():
        out = case.run(module, x)
        expected = _reference(case, module, x)
    if out.numel() == 0:
        event("zero_mean: empty input, nothing to average")
        return
    if not bool(expected.representable.all()):
        event("zero_mean: an intermediate may overflow, no claim")
        return
    got = out.detach().to("cpu", torch.float64)
    # mean(out) = mean(exact) + mean(out - exact); the exact output has mean 0
    # (up to float64 rounding of the reference and of this mean, gamma_N(f64)).
    n = got.numel()
    bound = tolerances.SLACK * expected.error.mean() + 2 * tolerances.gamma(n, torch.float64) * (
        got.abs().mean() + expected.value.abs().mean()
    )
    actual = got.mean()
    assert actual.abs() <= bound, (
        f"{case.spec.name} declares centering, but its output's mean is {actual.item():.6g} "
        f"(allowed: |mean| <= {bound.item():.3g} for {case.dtype} over {n} elements)"
    )


@layer_property(family="algebra", requires=("nonnegative_output",))
def nonnegative_output(case: LayerCase) -> None:
    """No output element is negative (NaN is finite_output's business, -0.0 counts as zero)."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    with torch.no_grad():
        out = case.run(module, x)
    negative = out < 0
    if negative.any():
        raise AssertionError(
            f"{case.spec.name} declares a non-negative output, but {int(negative.sum())} / {out.numel()} "
            f"elements are negative (smallest {out.min().item()!r})"
        )


@layer_property(family="gradients", regimes=("zeros", "constant", "ordinary", "tiny"), moderate=True)
def gradient_flow(case: LayerCase) -> None:
    """After a backward pass every trainable parameter and the input have a gradient,
    present and finite."""
    __tracebackhide__ = True
    module = case.build()
    x = case.make_input(requires_grad=True)
    out = case.run(module, x)
    if not out.requires_grad:
        raise AssertionError(
            f"{case.spec.name}: the output does not require grad although the input does: "
            "forward cut the result out of autograd (.data, .detach(), .item() or a new tensor?)"
        )
    # Backpropagate ones rather than out.sum(): the sum of many outputs could
    # overflow in low precision, the vector-Jacobian product of ones does not.
    out.backward(torch.ones_like(out))
    missing, nonfinite = [], []
    for name, parameter in [("input", x), *module.named_parameters()]:
        if not parameter.requires_grad:
            continue
        if parameter.grad is None:
            missing.append(name)
        elif not bool(parameter.grad.isfinite().all()):
            nonfinite.append(name)
    problems = []
    if missing:
        problems.append(f"received no gradient: {', '.join(missing)}")
    if nonfinite:
        problems.append(f"received a non-finite gradient: {', '.join(nonfinite)}")
    if problems:
        raise AssertionError(
            f"{case.spec.name}: after backward, {'; '.join(problems)}. "
            "A parameter read through .data/.detach() in forward never learns."
        )
