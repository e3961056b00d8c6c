"""Layers that are right on their first call and wrong over time: the bug classes of
``behaves_the_same_over_time`` (``properties/catalogue/stateful.py``).

Each passes a fresh-instance-per-example gate on most checks; only a sequence
of calls, backward passes, optimizer steps and mode switches on one instance
shows the bug.  ``tests/test_stateful.py`` asserts that the stateful property's
own assertion catches each under the ``ci`` profile.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from layers.lesson import CenteredLayer, MyLinear, MyLinearWithBuiltin
from layers.specs import centered_spec, my_linear_spec, my_linear_with_builtin_spec
from properties import LayerSpec


class StatefulMutant(NamedTuple):
    bug_class: str
    spec: LayerSpec


def _mutant(bug_class: str, spec: LayerSpec, module: type) -> StatefulMutant:
    return StatefulMutant(bug_class, dataclasses.replace(spec, name=module.__name__, module=module))


class WarmUpMyLinear(MyLinear):
    """Counts its calls; after a warm-up of three it takes a "fast path" that forgets the bias."""

    calls = 0

    def forward(self, X):
        self.calls += 1
        if self.calls > 3:
            return F.relu(torch.matmul(X, self.weight))
        return super().forward(X)


class ShapeCachedCentered(CenteredLayer):
    """Caches the mean per input shape: a later input of the same shape is centred with a stale mean."""

    def __init__(self):
        super().__init__()
        self._means = {}

    def forward(self, X):
        if X.shape not in self._means:
            self._means[X.shape] = X.mean().detach()
        return X - self._means[X.shape]


class GradClearingMyLinear(MyLinear):
    """Sets the gradients to None in forward ("to save memory"): accumulation keeps only the last backward."""

    def forward(self, X):
        self.weight.grad = None
        self.bias.grad = None
        return super().forward(X)


class GradZeroingBuiltin(MyLinearWithBuiltin):
    """Zeroes the gradients in place in forward: the same bug, the tensors kept."""

    def forward(self, X):
        for parameter in self.parameters():
            if parameter.grad is not None:
                parameter.grad.zero_()
        return super().forward(X)


class ReplacedParameterMyLinear(MyLinear):
    """Clamps its weight by assigning a new Parameter: the optimizer keeps updating the old one."""

    def forward(self, X):
        self.weight = nn.Parameter(self.weight.detach().clamp(-1e4, 1e4))
        return super().forward(X)


class EvalDriftBuiltin(MyLinearWithBuiltin):
    """Tracks a running mean of its output in every mode (``if self.training`` forgotten)."""

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__(in_units, units, device=device, dtype=dtype)
        self.register_buffer("running_mean", torch.zeros(units, device=device, dtype=dtype))

    def forward(self, X):
        out = super().forward(X)
        with torch.no_grad():
            self.running_mean.mul_(0.9).add_(0.1 * out.reshape(-1, out.shape[-1]).mean(0).nan_to_num())
        return out


class HookLeakBuiltin(MyLinearWithBuiltin):
    """Registers a forward hook (recording activations) on every call: hooks and memory pile up."""

    def forward(self, X):
        self.activations = []
        self.linear.register_forward_hook(lambda module, inputs, output: self.activations.append(output))
        return super().forward(X)


STATEFUL_MUTANTS = (
    _mutant("behaviour that changes with the number of calls", my_linear_spec, WarmUpMyLinear),
    _mutant("a stale cache keyed on shape", centered_spec, ShapeCachedCentered),
    _mutant("gradients cleared inside forward", my_linear_spec, GradClearingMyLinear),
    _mutant("gradients overwritten inside forward", my_linear_with_builtin_spec, GradZeroingBuiltin),
    _mutant("parameters replaced instead of updated in place", my_linear_spec, ReplacedParameterMyLinear),
    _mutant("buffers that drift in eval mode", my_linear_with_builtin_spec, EvalDriftBuiltin),
    _mutant("hooks that accumulate on every call", my_linear_with_builtin_spec, HookLeakBuiltin),
)

# The README's "Layers over time" example: a short one.
README_MUTANT = ShapeCachedCentered.__name__


def readme_example() -> str:
    """What the stateful property prints for ``README_MUTANT`` under ``ci``, shrunk (a Markdown block)."""
    from hypothesis import settings

    import properties.plugin  # noqa: F401  (registers the profiles)
    from properties import check_layer
    from tests import stateful_mutants  # under its own name when run as __main__: the program imports from it

    spec = next(m.spec for m in stateful_mutants.STATEFUL_MUTANTS if m.spec.name == README_MUTANT)
    try:
        check_layer(
            spec,
            ["behaves_the_same_over_time"],
            settings=settings(settings.get_profile("ci"), database=None, print_blob=False, report_multiple_bugs=False),
        )
    except AssertionError as failure:
        return f"```\n{failure}\n```"
    raise AssertionError(f"{README_MUTANT} passed behaves_the_same_over_time under ci")


if __name__ == "__main__":
    print(readme_example())
