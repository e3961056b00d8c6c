"""The lesson's layers described to the framework: one LayerSpec each.

``conftest.py`` registers ``LESSON_SPECS``; the self-tests derive broken
variants from them with ``dataclasses.replace``.
"""

import math

import torch
from hypothesis import strategies as st
from torch import nn

from layers.lesson import CenteredLayer, MyLinear, MyLinearWithBuiltin
from properties import LayerSpec, tolerances as tol
from properties.distributions import Uniform, standard_normal
from properties.strategies import sides

__all__ = ["LESSON_SPECS", "centered_spec", "my_linear_spec", "my_linear_with_builtin_spec"]

# Small feature counts mostly: they keep float16's bound meaningful (gamma(n)
# grows with n) and the examples fast.  Some climb the size ladder
# (strategies.sides), to reach code paths that switch at 16, 256, ... features;
# up to 1024, so that even both counts on the ladder keep the weight (and its
# float64 reference) within 2**20 elements.
linear_args = st.fixed_dictionaries(
    {"in_units": sides(max_side=8, max_ladder_side=1024), "units": sides(max_side=8, max_ladder_side=1024)}
)


def in_units(args):
    return (args["in_units"],)


def linear_shapes(args):
    return {"weight": (args["in_units"], args["units"]), "bias": (args["units"],)}


def builtin_linear_shapes(args):
    return {"linear.weight": (args["units"], args["in_units"]), "linear.bias": (args["units"],)}


def units(args):
    return (args["units"],)


def nn_linear_init(args):
    """nn.Linear draws weight and bias from U(-1/sqrt(in_units), 1/sqrt(in_units))."""
    bound = 1 / math.sqrt(args["in_units"])
    return Uniform(-bound, bound)


def linear_relu_from(weight_in_out: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """``nn.Linear`` + ReLU with the given weight (stored transposed by nn.Linear)."""
    in_units, units = weight_in_out.shape
    linear = nn.Linear(in_units, units, device=weight_in_out.device, dtype=weight_in_out.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight_in_out.T)
        linear.bias.copy_(bias)
    return nn.Sequential(linear, nn.ReLU())


def my_linear_from(weight_in_out: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """A ``MyLinear`` holding copies of the given parameters."""
    in_units, units = weight_in_out.shape
    twin = MyLinear(in_units, units, device=weight_in_out.device, dtype=weight_in_out.dtype)
    with torch.no_grad():
        twin.weight.copy_(weight_in_out)
        twin.bias.copy_(bias)
    return twin


centered_spec = LayerSpec(
    name="CenteredLayer",
    module=CenteredLayer,
    factory_kwargs=False,
    input_event_shape=(),
    batch_dims=(0, 4),  # any shape from 0-d to 4-d
    output_event_shape=(),  # the output has the input's shape
    reference=lambda module, x: tol.subtract(x, tol.mean(x)),
    centering=True,
    per_sample=False,  # the mean is taken over the whole batch: it couples samples
)

my_linear_spec = LayerSpec(
    name="MyLinear",
    module=MyLinear,
    constructor_args=linear_args,
    input_event_shape=in_units,
    batch_dims=(0, 3),
    # The lesson's own X @ W + b, W (in, out): x @ W is rounded before the bias is added.
    reference=lambda module, x: tol.relu(tol.matmul(x, tol.exact(module.weight)) + tol.exact(module.bias)),
    equivalents={"nn.Linear+ReLU": lambda module: linear_relu_from(module.weight, module.bias)},
    relu_of=lambda module, x: torch.matmul(x, module.weight) + module.bias,
    nonnegative_output=True,
    per_sample=True,
    output_event_shape=units,
    parameter_shapes=linear_shapes,
    parameter_init={"weight": standard_normal(), "bias": standard_normal()},
)

my_linear_with_builtin_spec = LayerSpec(
    name="MyLinearWithBuiltin",
    module=MyLinearWithBuiltin,
    constructor_args=linear_args,
    input_event_shape=in_units,
    batch_dims=(0, 3),
    reference=lambda module, x: tol.relu(tol.linear(x, tol.exact(module.linear.weight), tol.exact(module.linear.bias))),
    equivalents={"MyLinear": lambda module: my_linear_from(module.linear.weight.T, module.linear.bias)},
    relu_of=lambda module, x: module.linear(x),
    nonnegative_output=True,
    per_sample=True,
    output_event_shape=units,
    parameter_shapes=builtin_linear_shapes,
    parameter_init={"linear.weight": nn_linear_init, "linear.bias": nn_linear_init},
)

LESSON_SPECS = (centered_spec, my_linear_spec, my_linear_with_builtin_spec)
