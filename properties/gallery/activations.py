"""Elementwise activations (GELU, SiLU, Softplus) and the normalized exponentials (softmax, log-softmax)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import strategies as st
from torch import nn

from properties import tolerances as tol
from properties.errors import SpecError
from properties.gallery.adapter import FEATURES, Option, _drawn, _Factory, _spec
from properties.spec import LayerSpec


def _elementwise(family: str, module, name, options: Mapping[str, Any], operation, torch_module, **laws) -> LayerSpec:
    factory = _Factory(family, module, (), tuple(options))
    return _spec(
        family, factory, name,
        constructor_args=dict(options),
        per_sample=True,
        reference=lambda m, x: operation(x),
        equivalents={"torch": lambda m: torch_module()},
        **laws,
    )


def gelu(module: Callable[..., nn.Module] = nn.GELU, *, name: str | None = None, approximate: str = "none") -> LayerSpec:
    """``nn.GELU``: ``x * Phi(x)`` (``approximate="none"``) or its tanh form (``"tanh"``)."""
    if approximate not in ("none", "tanh"):
        raise SpecError(f"gallery.gelu: approximate={approximate!r}; pass 'none' (the exact form) or 'tanh'.")
    name = name or (None if module is not nn.GELU else ("gelu" if approximate == "none" else "gelu_tanh"))
    return _elementwise(
        "gelu", module, name, {"approximate": approximate},
        lambda x: tol.gelu(x, approximate=approximate), lambda: nn.GELU(approximate=approximate),
    )


def silu(module: Callable[..., nn.Module] = nn.SiLU, *, name: str | None = None) -> LayerSpec:
    """``nn.SiLU``: ``x * sigmoid(x)``."""
    return _elementwise("silu", module, name, {}, tol.silu, nn.SiLU)


def softplus(
    module: Callable[..., nn.Module] = nn.Softplus, *, name: str | None = None, beta: float = 1.0, threshold: float = 20.0
) -> LayerSpec:
    """``nn.Softplus``: ``log(1 + exp(beta * x)) / beta``, linear above ``threshold``; non-negative."""
    return _elementwise(
        "softplus", module, name, {"beta": beta, "threshold": threshold},
        lambda x: tol.softplus(x, beta, threshold), lambda: nn.Softplus(beta, threshold), nonnegative_output=True,
    )


def _normalized_exponential(family, module, name, dim, features, operation, torch_class, **laws) -> LayerSpec:
    factory = _Factory(family, module, (), ("dim",))
    return _spec(
        family, factory, name,
        constructor_args=st.fixed_dictionaries({"dim": st.just(dim), "features": _drawn(features)}),
        input_event_shape=lambda a: (a["features"],),
        per_sample=True,
        reference=lambda m, x: operation(x, dim),
        equivalents={"torch": lambda m: torch_class(dim=dim)},
        **laws,
    )


def softmax(module: Callable[..., nn.Module] = nn.Softmax, *, name: str | None = None, features: Option = FEATURES) -> LayerSpec:
    """``nn.Softmax(dim=-1)``: rows are probability distributions; invariant to a shift."""
    return _normalized_exponential(
        "softmax", module, name, -1, features, tol.softmax, nn.Softmax,
        sums_to_one=(-1,), nonnegative_output=True, invariances=("shift",),
    )


def log_softmax(module: Callable[..., nn.Module] = nn.LogSoftmax, *, name: str | None = None, features: Option = FEATURES) -> LayerSpec:
    """``nn.LogSoftmax(dim=-1)``: the exp of each row sums to one; invariant to a shift."""
    return _normalized_exponential(
        "log_softmax", module, name, -1, features, tol.log_softmax, nn.LogSoftmax,
        log_sums_to_one=(-1,), invariances=("shift",),
    )
