"""Gradient checks make no claim on relu's kink, and only there.

A linear + relu layer whose weight and bias start at zero (a zero-initialized
residual branch) has every pre-activation exactly on the kink: finite
differences give 1/2 where autograd gives relu's 0, and neither is wrong.  The
spec declares the pre-activation (``relu_of``), so the gradient checks skip
such examples; without that rule the same checks fail on this correct layer.
"""

import pytest
import torch
from hypothesis import settings
from torch import nn

from properties import LayerSpec, check_layer, tolerances as tol
from properties.catalogue import gradients

CHECKS = ["gradients_match_finite_differences", "second_derivatives_match_finite_differences"]
FEW = settings(max_examples=10, deadline=None, database=None, derandomize=True)


class ZeroInitLinearReLU(nn.Module):
    def __init__(self, features, *, device=None, dtype=None):
        super().__init__()
        self.linear = nn.Linear(features, features, device=device, dtype=dtype)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x):
        return torch.relu(self.linear(x))


SPEC = LayerSpec(
    name="ZeroInitLinearReLU",
    module=ZeroInitLinearReLU,
    constructor_args={"features": 3},
    input_event_shape=(3,),
    reference=lambda module, x: tol.relu(tol.linear(x, tol.exact(module.linear.weight), tol.exact(module.linear.bias))),
    relu_of=lambda module, x: module.linear(x),
)


@pytest.mark.parametrize("check", CHECKS)
def test_a_layer_on_the_kink_passes(check):
    check_layer(SPEC, [check], settings=FEW)


@pytest.mark.parametrize("check", CHECKS)
def test_without_the_kink_rule_the_same_check_fails(check, monkeypatch):
    monkeypatch.setattr(gradients, "_near_the_kink", lambda *args: False)
    with pytest.raises(AssertionError, match=f"^{check} failed on ZeroInitLinearReLU: "):
        check_layer(SPEC, [check], settings=FEW)

