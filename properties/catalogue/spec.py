"""Is the spec itself usable?  A misconfigured spec is reported as a SpecError
naming the field, so it is never mistaken for a broken layer.

This runs on a *typical* input built from the drawn example (one batch
dimension of two samples where the spec allows it, ordinary values), which
any layer matching its spec must accept.
"""

from __future__ import annotations

import torch

from properties.cases import LayerCase
from properties.authoring import reference
from properties.errors import SpecError
from properties.registry import layer_property
from properties.spec import spec_call


def typical_input(case: LayerCase) -> torch.Tensor:
    """One batch dimension of two samples where the spec allows it (or its declared sizes'
    nearest), ordinary values within the declared domain."""
    low, high = case.spec.batch_dims
    dims = min(max(low, 1), high)
    batch = tuple(min(max(2, case.spec.batch_sides.get(i, (1, 2))[0]), case.spec.batch_sides.get(i, (2, 2))[1]) for i in range(dims))
    shape = (*batch, *case.spec.event_shape(case.constructor_args))
    return case.input_recipe.typical(shape).materialize()


@layer_property(regimes=("ordinary",), max_splices=0)
def spec_is_usable(case: LayerCase) -> None:
    """The spec builds the layer, describes inputs it accepts, and its reference,
    equivalents, relu_of and parameter_init fit the layer."""
    __tracebackhide__ = True
    spec, args = case.spec, dict(case.constructor_args)
    module = case.build()
    x = typical_input(case)
    try:
        with torch.no_grad():
            out = case.run(module, x)
    except Exception as error:
        raise SpecError(
            f"LayerSpec {spec.name!r}, fields 'input_event_shape'/'batch_dims': the layer rejects a typical "
            f"input of shape {tuple(x.shape)} ({case.dtype}) for constructor arguments {args}: "
            f"{type(error).__name__}: {error}. Describe the inputs the layer takes; if the spec is right, "
            "the layer cannot take its most ordinary input."
        ) from None
    if not isinstance(out, torch.Tensor):
        raise SpecError(
            f"LayerSpec {spec.name!r}, field 'output': forward returned {type(out).__name__}; the properties check "
            "one tensor. Select it with output= (an index, a key or a function of the output)."
        )
    if spec.reference is not None:
        with torch.no_grad():
            expected = reference(case, module, x)
        if tuple(expected.value.shape) != tuple(out.shape):
            raise SpecError(
                f"LayerSpec {spec.name!r}, field 'reference' gives shape {tuple(expected.value.shape)} for an input "
                f"of shape {tuple(x.shape)} and constructor arguments {args}, where the layer gives "
                f"{tuple(out.shape)}: the reference computes something else. Make it return the layer's output shape."
            )
    for name, make in spec.equivalents.items():
        twin = spec_call(spec, "equivalents", make, module)
        with torch.no_grad():
            twin_out = spec_call(spec, "equivalents", case.run, twin, x)  # called as the layer is (inputs=, output=)
        if tuple(twin_out.shape) != tuple(out.shape):
            raise SpecError(
                f"LayerSpec {spec.name!r}, field 'equivalents': {name!r} gives shape {tuple(twin_out.shape)}, "
                f"the layer {tuple(out.shape)}."
            )
    if spec.relu_of is not None:
        with torch.no_grad():
            pre = spec_call(spec, "relu_of", spec.relu_of, module, x)
        if tuple(pre.shape) != tuple(out.shape):
            raise SpecError(
                f"LayerSpec {spec.name!r}, field 'relu_of' gives shape {tuple(pre.shape)}, the layer {tuple(out.shape)}."
            )
    held = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    unknown = sorted(set(spec.initialization(args)) - set(held))
    if unknown:
        raise SpecError(
            f"LayerSpec {spec.name!r}, field 'parameter_init' names {unknown}, which the layer does not have "
            f"(it has {sorted(held)})."
        )
