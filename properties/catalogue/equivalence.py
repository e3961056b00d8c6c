"""Equivalence: the output against the spec's exact reference and its declared equivalents."""

from __future__ import annotations

import torch

from properties import tolerances
from properties.authoring import (
    assert_same_computation,
    comparison_bound,
    exact_output,
    float64_twin_of,
    forward,
    reference,
)
from properties.cases import LayerCase
from properties.catalogue._common import compared_modes
from properties.comparison import Float64Twin, sum_of_bounds
from properties.registry import layer_property
from properties.spec import spec_call


@layer_property(requires=("reference",))
def matches_reference(case: LayerCase) -> None:
    """The output is within the rounding-error bound of the spec's exact reference,
    in train and in eval mode (eval only for a stochastic layer: the reference describes eval)."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    for mode in compared_modes(case):
        module.train(mode == "train")
        out = forward(case, module, x)
        expected = reference(case, module, x)
        tolerances.assert_within_bound(out, expected, what=f"{case.spec.name} output ({mode} mode) vs its reference")


@layer_property(requires=("equivalents",))
def matches_equivalents(case: LayerCase) -> None:
    """The layer computes the same as each declared equivalent built from its parameters
    (MyLinear = nn.Linear + ReLU with the weight transposed), in train and in eval mode
    (eval only for a stochastic layer)."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    for mode in compared_modes(case):
        module.train(mode == "train")
        out = forward(case, module, x)
        expected = exact_output(case, module, x)
        for name, make in case.spec.equivalents.items():
            twin = spec_call(case.spec, "equivalents", make, module)
            if isinstance(twin, torch.nn.Module):
                twin.train(module.training)
            got, what = forward(case, twin, x), f"{name} vs {case.spec.name} ({mode} mode)"
            if isinstance(expected, Float64Twin):
                # No reference: each side within its own bound of its own float64
                # twin, and the two twins' exact values the same function.
                both = sum_of_bounds(
                    comparison_bound(out, expected, what=what),
                    comparison_bound(got, float64_twin_of(case, twin, x), what=what),
                )
                tolerances.assert_within_bound(got, both, what=what)
            else:
                assert_same_computation(got, out, expected, what=what)
