"""Running one property on one layer: draw an example, call the check.

Shared by the pytest plugin (one test per property x layer) and by
``check_layer`` for programmatic use and the framework's self-tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from hypothesis import given, settings as Settings, strategies as st

from properties.errors import SpecError
from properties.registry import LayerProperty, registered_properties
from properties.spec import LayerSpec
from properties.strategies import LayerCase, layer_cases

__all__ = ["check_layer", "check_property_once", "scaled_settings", "select", "spec_call"]

# What the run selected (``--dtypes``/``--devices``); None means everything.
_selected: dict[str, tuple[Any, ...] | None] = {"dtypes": None, "devices": None}


def select(*, dtypes: Sequence[torch.dtype] | None = None, devices: Sequence[str] | None = None) -> None:
    """Narrow every example of this process to these dtypes and devices."""
    _selected["dtypes"] = None if dtypes is None else tuple(dtypes)
    _selected["devices"] = None if devices is None else tuple(devices)


def spec_call(spec: LayerSpec, field: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call something the spec provided; its exceptions become a SpecError naming the field."""
    try:
        return function(*args, **kwargs)
    except SpecError:
        raise
    except Exception as error:
        raise SpecError(
            f"LayerSpec {spec.name!r}, field {field!r} raised {type(error).__name__}: {error}. "
            "This is a problem with the spec, not a verdict on the layer: fix the field."
        ) from error


def cases_for(prop: LayerProperty, spec: LayerSpec) -> st.SearchStrategy[LayerCase]:
    """The examples ``prop`` runs on ``spec``, within what this run selected."""
    only_dtypes = _selected["dtypes"]
    if prop.dtypes is not None:
        only_dtypes = [d for d in prop.dtypes if only_dtypes is None or d in only_dtypes]
    return layer_cases(
        spec,
        only_dtypes=only_dtypes,
        only_devices=_selected["devices"],
        regimes=prop.regimes,
        max_splices=prop.max_splices,
        limit=prop.limit,
    )


def check_property_once(prop: LayerProperty, spec: LayerSpec, data: st.DataObject) -> None:
    """Draw one example of ``spec`` for ``prop`` and check it."""
    __tracebackhide__ = True
    case = data.draw(cases_for(prop, spec), label="example")
    if prop.extra is None:
        prop.check(case)
    else:
        prop.check(case, data.draw(prop.extra, label="extra"))


def check_layer(
    spec: LayerSpec,
    properties: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
) -> None:
    """Run properties (all that apply, by default) on ``spec`` outside pytest.

    Raises the first failure, after Hypothesis has shrunk it.
    """
    __tracebackhide__ = True
    chosen = [p for p in registered_properties() if properties is None or p.name in properties]
    if properties is not None:
        unknown = sorted(set(properties) - {p.name for p in chosen})
        if unknown:
            raise SpecError(f"unknown properties {unknown}; known: {[p.name for p in registered_properties()]}")
    for prop in chosen:
        if prop.not_applicable_because(spec):
            continue
        test = _hypothesis_test(prop, spec)
        test = scaled_settings(prop, settings)(test)
        test()


def scaled_settings(prop: LayerProperty, base: Settings | None = None) -> Settings:
    """``base`` (default: the loaded profile) with the property's example count applied."""
    base = Settings.default if base is None else base
    if prop.examples_scale == 1.0:
        return base
    return Settings(base, max_examples=max(2, int(base.max_examples * prop.examples_scale)))


def _hypothesis_test(prop: LayerProperty, spec: LayerSpec) -> Callable[[], None]:
    @given(data=st.data())
    def test(data: st.DataObject) -> None:
        check_property_once(prop, spec, data)

    test.__name__ = test.__qualname__ = f"{prop.name}[{spec.name}]"
    # One example-database key per (property, layer), not one for all.
    test.hypothesis.inner_test._hypothesis_internal_add_digest = test.__name__.encode()
    return test
