"""Property-based verification of custom PyTorch layers.

Public API (imported lazily, so that loading the pytest plugin in a project
that does not use it imports neither torch nor the framework)::

    from properties import LayerSpec, register, layer_property, tolerances, strategies

* ``LayerSpec`` / ``register``: describe a layer and add it to the gate.
* ``layer_property``: add a property to the catalogue.
* ``tolerances``: exact references that carry their rounding-error bound.
* ``strategies``: Hypothesis strategies for dtypes, devices, shapes, tensors, layer examples.
* ``check_layer``: run the catalogue on a spec outside pytest.
* ``SpecError``: the framework was told something wrong (not: the layer is wrong).
"""

import importlib

__all__ = [
    "LayerSpec",
    "SpecError",
    "check_layer",
    "layer_property",
    "register",
    "registered_layers",
    "registered_properties",
    "strategies",
    "tolerances",
]

_where = {
    "LayerSpec": "properties.spec",
    "SpecError": "properties.errors",
    "check_layer": "properties.runner",
    "layer_property": "properties.registry",
    "register": "properties.registry",
    "registered_layers": "properties.registry",
    "registered_properties": "properties.runner",  # the runner imports the built-in catalogue
}


def __getattr__(name):
    if name in ("strategies", "tolerances"):
        return importlib.import_module(f"properties.{name}")
    if name in _where:
        return getattr(importlib.import_module(_where[name]), name)
    raise AttributeError(f"module 'properties' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
