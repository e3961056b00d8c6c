"""Execution variants fail when they should and skip only when the platform cannot run them.

A layer that eager mode runs but TorchScript cannot compile fails
``matches_torchscript`` by its own assertion (with how to declare it
expected); a platform probe that fails skips the property with its reason,
decided once per process, before any example is drawn.
"""

import dataclasses

import pytest
import torch
from hypothesis import settings

from layers.lesson import CenteredLayer
from layers.specs import centered_spec
from properties import check_layer
from properties.registry import LayerProperty
from properties.runner import property_test
from properties.strategies import ValueDomain

FEW = settings(max_examples=3, database=None, derandomize=True, deadline=None)


class GeneratorCentered(CenteredLayer):
    """Right in eager mode; TorchScript does not compile generator expressions."""

    def forward(self, X):
        return X - sum(m for m in [X.mean()])


def test_a_variant_that_cannot_compile_the_layer_fails_and_says_how_to_declare_it():
    spec = dataclasses.replace(centered_spec, name="GeneratorCentered", module=GeneratorCentered)
    with pytest.raises(AssertionError) as failure:
        check_layer(spec, ["matches_torchscript"], settings=FEW)
    message = str(failure.value)
    assert message.startswith("matches_torchscript failed on GeneratorCentered: ")
    assert "torch.jit.script raised" in message and "expected failure" in message
    check_layer(centered_spec, ["matches_torchscript"], settings=FEW)  # the correct layer passes


def test_a_failing_platform_probe_skips_once_before_any_example():
    probed, checked = [], []

    def probe():
        probed.append(1)
        return "no compiler on this machine (planted)"

    prop = LayerProperty(
        name="planted_variant_with_failing_probe",
        check=lambda case: checked.append(case),
        family="variants",
        platform_probe=probe,
    )
    test = property_test(prop, settings=FEW)
    for _ in range(2):
        with pytest.raises(pytest.skip.Exception, match="cannot run here: no compiler on this machine"):
            test(layer=centered_spec)
    assert probed == [1] and checked == []


def test_a_passing_platform_probe_lets_every_example_run():
    prop = LayerProperty(
        name="planted_variant_with_passing_probe",
        check=lambda case: checked.append(case),
        family="variants",
        platform_probe=lambda: None,
        values=ValueDomain(),
    )
    checked = []
    property_test(prop, settings=FEW)(layer=centered_spec)
    assert len(checked) == 3 and all(isinstance(c.make_input(), torch.Tensor) for c in checked)
