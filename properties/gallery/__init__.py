"""Verified specs of common layer families, for a user's own version of them.

Each function returns a ``LayerSpec`` for one family, built around the module
it is given (torch's own by default)::

    from properties import gallery, register
    register(gallery.rms_norm(MyRMSNorm))

The spec checks the module against the family's exact reference (written with
``properties.tolerances``), the family's laws (``properties.catalogue.laws``:
scale invariance for RMSNorm, rows summing to one for softmax, causality for
causal attention, ...) and against torch's own module built with the same
parameters (the ``equivalents`` entry ``torch``).

How the module is called: with the family's sizes positionally, as torch's
constructor takes them (``MyRMSNorm(normalized_shape)``,
``MyLinear(in_features, out_features)``), and with those of torch's keyword
options (``eps=``, ``bias=``, ``approximate=``, ``device=``/``dtype=``) that
its signature accepts.  A constructor that needs something else gets a
``SpecError`` saying so: pass a factory instead
(``gallery.rms_norm(lambda normalized_shape, **options: MyRMSNorm(dim=normalized_shape))``).
Parameters are read by torch's names (``weight``, ``bias``); the keyword
options ``weight=`` / ``bias=`` name yours.  Options the module does not take
must match its own defaults (the reference uses the gallery's).

torch's own modules pass every spec here (``tests/test_gallery.py``, and the
soak); ``tests/gallery_mutants.py`` lists the bugs each family's properties catch.
``TORCH_SPECS`` (every family on torch's own modules) is built on first use,
not when the gallery is imported.
"""

from __future__ import annotations

from typing import Any

from properties.gallery.activations import gelu, log_softmax, silu, softmax, softplus
from properties.gallery.adapter import FEATURES, Option, SelfAttention
from properties.gallery.attention import attention, multihead_attention, scaled_dot_product_attention
from properties.gallery.linear import conv1d, conv2d, linear
from properties.gallery.norms import batch_norm1d, layer_norm, rms_norm
from properties.gallery.stochastic import dropout, embedding
from properties.spec import LayerSpec

__all__ = [
    "TORCH_SPECS",
    "batch_norm1d",
    "conv1d",
    "conv2d",
    "dropout",
    "embedding",
    "gelu",
    "layer_norm",
    "linear",
    "log_softmax",
    "multihead_attention",
    "rms_norm",
    "scaled_dot_product_attention",
    "silu",
    "softmax",
    "softplus",
]


def torch_specs() -> list[LayerSpec]:
    """Every family on torch's own modules (the framework's self-test; torch is correct by definition)."""
    return [
        linear(), conv1d(), conv2d(), layer_norm(), rms_norm(), gelu(), gelu(approximate="tanh"), silu(), softplus(),
        softmax(), log_softmax(), scaled_dot_product_attention(), scaled_dot_product_attention(is_causal=False),
        dropout(), batch_norm1d(), embedding(), multihead_attention(),
    ]


def __getattr__(name: str) -> Any:
    # TORCH_SPECS is built on first use and then kept as a plain global, so that
    # importing the gallery (to register one family) does not build all seventeen.
    if name == "TORCH_SPECS":
        globals()["TORCH_SPECS"] = specs = torch_specs()
        return specs
    raise AttributeError(f"module 'properties.gallery' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "TORCH_SPECS"})
