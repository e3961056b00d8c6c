"""The linear family and the convolutions (stride 1, integer padding): linear in their input."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import strategies as st
from torch import nn

from properties import tolerances as tol
from properties.gallery.adapter import (
    FEATURES, Option, _attribute, _drawn, _Factory, _parameters, _placed, _spec, _with_parameters,
)
from properties.spec import LayerSpec


def linear(
    module: Callable[..., nn.Module] = nn.Linear,
    *,
    name: str | None = None,
    in_features: Option = FEATURES,
    out_features: Option = st.integers(1, 8),
    bias: Option = st.booleans(),
    weight_name: str = "weight",
    bias_name: str = "bias",
) -> LayerSpec:
    """``nn.Linear``: ``x @ weight.T + bias``, weight ``(out_features, in_features)``; linear in its input."""
    factory = _Factory("linear", module, ("in_features", "out_features"), ("bias",))

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        p = _parameters(m, "linear", required=("weight",), weight=weight_name, bias=bias_name)
        return tol.linear(x, p["weight"], p["bias"])

    def torch_twin(m: nn.Module) -> nn.Module:
        args = factory.args_of(m)
        twin = nn.Linear(args["in_features"], args["out_features"], bias=_attribute(m, bias_name) is not None, **_placed(m))
        return _with_parameters(twin, m, {"weight": weight_name, "bias": bias_name})

    return _spec(
        "linear", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"in_features": _drawn(in_features), "out_features": _drawn(out_features), "bias": _drawn(bias)}
        ),
        input_event_shape=lambda a: (a["in_features"],),
        output_event_shape=lambda a: (a["out_features"],),
        per_sample=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        linear_in_input=True,
    )


def _convolution(nd: int, module, name, in_channels, out_channels, kernel_size, padding, bias, side, weight_name, bias_name):
    family = f"conv{nd}d"
    factory = _Factory(family, module, ("in_channels", "out_channels", "kernel_size"), ("padding", "bias"))
    sides = ("length",) if nd == 1 else ("height", "width")
    operation = tol.conv1d if nd == 1 else tol.conv2d
    torch_class = nn.Conv1d if nd == 1 else nn.Conv2d

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        p = _parameters(m, family, required=("weight",), weight=weight_name, bias=bias_name)
        return operation(x, p["weight"], p["bias"], padding=factory.args_of(m)["padding"])

    def torch_twin(m: nn.Module) -> nn.Module:
        a = factory.args_of(m)
        twin = torch_class(
            a["in_channels"], a["out_channels"], a["kernel_size"], padding=a["padding"],
            bias=_attribute(m, bias_name) is not None, **_placed(m),
        )
        return _with_parameters(twin, m, {"weight": weight_name, "bias": bias_name})

    def out_side(a: Mapping[str, Any], s: str) -> int:
        return a[s] + 2 * a["padding"] - a["kernel_size"] + 1

    return _spec(
        family, factory, name,
        constructor_args=st.fixed_dictionaries(
            {"in_channels": _drawn(in_channels), "out_channels": _drawn(out_channels), "kernel_size": _drawn(kernel_size),
             "padding": _drawn(padding), "bias": _drawn(bias), **{s: _drawn(side) for s in sides}}
        ).filter(lambda a: all(out_side(a, s) >= 1 for s in sides)),
        input_event_shape=lambda a: (a["in_channels"], *(a[s] for s in sides)),
        output_event_shape=lambda a: (a["out_channels"], *(out_side(a, s) for s in sides)),
        batch_dims=(0, 1),  # torch's convolutions take (C, ...) or (N, C, ...)
        per_sample=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        linear_in_input=True,
    )


def conv1d(
    module: Callable[..., nn.Module] = nn.Conv1d,
    *,
    name: str | None = None,
    in_channels: Option = st.integers(1, 3),
    out_channels: Option = st.integers(1, 3),
    kernel_size: Option = st.integers(1, 3),
    padding: Option = st.integers(0, 1),
    bias: Option = st.booleans(),
    length: Option = st.integers(3, 8),
    weight_name: str = "weight",
    bias_name: str = "bias",
) -> LayerSpec:
    """``nn.Conv1d`` (stride 1, integer padding) on ``(C, L)`` or ``(N, C, L)``; linear in its input."""
    return _convolution(1, module, name, in_channels, out_channels, kernel_size, padding, bias, length, weight_name, bias_name)


def conv2d(
    module: Callable[..., nn.Module] = nn.Conv2d,
    *,
    name: str | None = None,
    in_channels: Option = st.integers(1, 3),
    out_channels: Option = st.integers(1, 3),
    kernel_size: Option = st.integers(1, 3),
    padding: Option = st.integers(0, 1),
    bias: Option = st.booleans(),
    side: Option = st.integers(3, 6),
    weight_name: str = "weight",
    bias_name: str = "bias",
) -> LayerSpec:
    """``nn.Conv2d`` (stride 1, integer padding) on ``(C, H, W)`` or ``(N, C, H, W)``; linear in its input."""
    return _convolution(2, module, name, in_channels, out_channels, kernel_size, padding, bias, side, weight_name, bias_name)
