"""Broken variants of the lesson's layers, each with the bug it plants.

Each mutant is a ``LayerSpec`` derived from a correct spec with
``dataclasses.replace``; ``tests/test_mutants.py`` asserts the gate catches
every one and passes the correct layers.
"""

import dataclasses

import torch
import torch.nn.functional as F

from layers.known_bad import TextbookMyLinear
from layers.lesson import CenteredLayer, MyLinear, MyLinearWithBuiltin
from layers.specs import centered_spec, my_linear_spec, my_linear_with_builtin_spec


def mutant(spec, module, name=None):
    return dataclasses.replace(spec, name=name or module.__name__, module=module)


class OffsetCentered(CenteredLayer):
    """Small constant offset after centering."""

    def forward(self, X):
        return X - X.mean() + 1e-3


class OffsetMyLinear(MyLinear):
    """Small constant offset added to the output."""

    def forward(self, X):
        return super().forward(X) + 1e-3


class NoReluMyLinear(MyLinear):
    """Missing activation: the output can be negative."""

    def forward(self, X):
        return torch.matmul(X, self.weight) + self.bias


class DetachedWeightBuiltin(MyLinearWithBuiltin):
    """The weight read through .detach(): the numbers are right, the weight never learns."""

    def forward(self, X):
        return F.relu(F.linear(X, self.linear.weight.detach(), self.linear.bias))


class NoBiasBuiltin(MyLinearWithBuiltin):
    """Missing bias in the built-in variant."""

    def forward(self, X):
        return F.relu(F.linear(X, self.linear.weight))


TEXTBOOK = mutant(my_linear_spec, TextbookMyLinear)

# mutant spec -> the properties expected to catch it
CORE_MUTANTS = {
    TEXTBOOK: {"gradient_flow"},
    mutant(centered_spec, OffsetCentered): {"zero_mean_after_centering", "matches_reference"},
    mutant(my_linear_spec, OffsetMyLinear): {"matches_reference", "matches_equivalents"},
    mutant(my_linear_spec, NoReluMyLinear): {"nonnegative_output", "matches_reference", "matches_equivalents"},
    mutant(my_linear_with_builtin_spec, DetachedWeightBuiltin): {"gradient_flow"},
    mutant(my_linear_with_builtin_spec, NoBiasBuiltin): {"matches_reference", "matches_equivalents"},
}
