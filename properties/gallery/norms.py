"""Normalization families: layer norm, RMS norm (over the last dim) and batch norm (over the batch)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import strategies as st
from torch import nn

from properties import tolerances as tol
from properties.distributions import if_present, ones, zeros
from properties.gallery.adapter import (
    FEATURES, Option, _attribute, _drawn, _Factory, _parameters, _placed, _spec, _with_parameters,
)
from properties.spec import LayerSpec


def layer_norm(
    module: Callable[..., nn.Module] = nn.LayerNorm,
    *,
    name: str | None = None,
    normalized_shape: Option = FEATURES,
    eps: float = 1e-5,
    elementwise_affine: Option = st.booleans(),
    weight_name: str = "weight",
    bias_name: str = "bias",
) -> LayerSpec:
    """``nn.LayerNorm`` over the last dim: ``(x - mean) / sqrt(var + eps) * weight + bias``
    (biased variance); invariant to shift and positive scale (up to ``eps``)."""
    factory = _Factory("layer_norm", module, ("normalized_shape",), ("eps", "elementwise_affine"))

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        p = _parameters(m, "layer_norm", weight=weight_name, bias=bias_name)
        return tol.layer_norm(x, (x.shape[-1],), p["weight"], p["bias"], eps)

    def torch_twin(m: nn.Module) -> nn.Module:
        n = factory.args_of(m)["normalized_shape"]
        affine = _attribute(m, weight_name) is not None
        twin = nn.LayerNorm(n, eps=eps, elementwise_affine=affine, bias=_attribute(m, bias_name) is not None, **_placed(m))
        return _with_parameters(twin, m, {"weight": weight_name, "bias": bias_name})

    return _spec(
        "layer_norm", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"normalized_shape": _drawn(normalized_shape), "eps": st.just(eps), "elementwise_affine": _drawn(elementwise_affine)}
        ),
        input_event_shape=lambda a: (a["normalized_shape"],),
        per_sample=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        invariances=("shift", "scale"),
        parameter_init=_affine_init(factory, {weight_name: ones(), bias_name: zeros()}),
    )


def rms_norm(
    module: Callable[..., nn.Module] = nn.RMSNorm,
    *,
    name: str | None = None,
    normalized_shape: Option = FEATURES,
    eps: float = 1e-6,
    elementwise_affine: Option = st.booleans(),
    weight_name: str = "weight",
) -> LayerSpec:
    """``nn.RMSNorm`` over the last dim: ``x / sqrt(mean(x**2) + eps) * weight``;
    invariant to positive scale (up to ``eps``)."""
    factory = _Factory("rms_norm", module, ("normalized_shape",), ("eps", "elementwise_affine"))

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        return tol.rms_norm(x, (x.shape[-1],), _parameters(m, "rms_norm", weight=weight_name)["weight"], eps)

    def torch_twin(m: nn.Module) -> nn.Module:
        n = factory.args_of(m)["normalized_shape"]
        twin = nn.RMSNorm(n, eps=eps, elementwise_affine=_attribute(m, weight_name) is not None, **_placed(m))
        return _with_parameters(twin, m, {"weight": weight_name})

    return _spec(
        "rms_norm", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"normalized_shape": _drawn(normalized_shape), "eps": st.just(eps), "elementwise_affine": _drawn(elementwise_affine)}
        ),
        input_event_shape=lambda a: (a["normalized_shape"],),
        per_sample=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        invariances=("scale",),
        parameter_init=_affine_init(factory, {weight_name: ones()}),
    )


def _affine_init(factory: _Factory, init: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    """A norm's weight starts at ones and its bias at zeros, where the constructor's
    ``elementwise_affine`` says it has them; a module without that option is checked
    on the ones it has (a zero-initialized weight must not pass unseen)."""
    if "elementwise_affine" not in factory.options:
        return lambda args: {name: if_present(d) for name, d in init.items()}
    return lambda args: dict(init) if args["elementwise_affine"] else {}


def batch_norm1d(
    module: Callable[..., nn.Module] = nn.BatchNorm1d,
    *,
    name: str | None = None,
    num_features: Option = st.integers(1, 6),
    affine: Option = st.booleans(),
    eps: float = 1e-5,
) -> LayerSpec:
    """``nn.BatchNorm1d`` on ``(N, C)``: ``(x - mean) / sqrt(var + eps) * weight + bias`` with
    the batch's statistics in train mode (biased variance; a batch of at least two), the
    running ones in eval mode; weight ones, bias zeros, running mean zeros and variance ones
    at construction."""
    factory = _Factory("batch_norm1d", module, ("num_features",), ("eps", "affine"))

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        p = _parameters(m, "batch_norm1d", weight="weight", bias="bias")
        running = [_attribute(m, n) for n in ("running_mean", "running_var")]
        if m.training or any(r is None for r in running):  # without running statistics: the batch's
            return tol.batch_norm(x, weight=p["weight"], bias=p["bias"], training=True, eps=eps)
        return tol.batch_norm(x, *(tol.exact(r) for r in running), p["weight"], p["bias"], training=False, eps=eps)

    def torch_twin(m: nn.Module) -> nn.Module:
        a = factory.args_of(m)
        twin = nn.BatchNorm1d(a["num_features"], eps=eps, affine=_attribute(m, "weight") is not None, **_placed(m))
        twin.load_state_dict(m.state_dict())
        return twin.train(m.training)

    def init(a: Mapping[str, Any]) -> Mapping[str, Any]:
        stats = {"running_mean": zeros(), "running_var": ones()}
        return stats | ({"weight": ones(), "bias": zeros()} if a["affine"] and "affine" in factory.options else {})

    return _spec(
        "batch_norm1d", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"num_features": _drawn(num_features), "eps": st.just(eps), "affine": _drawn(affine)}
        ),
        input_event_shape=lambda a: (a["num_features"],),
        batch_dims=(1, 1),
        batch_sides={0: (2, 4)},  # a batch of one has no variance: torch raises in train mode
        train_eval_differ=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        parameter_init=init,
    )
