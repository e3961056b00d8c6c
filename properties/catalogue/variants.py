"""Execution variants, in the spirit of chex's variants: the same layer scripted,
traced and compiled computes what eager mode computes.

A variant that cannot run on this platform or for this layer is reported as
skipped with the reason, never silently passed.  Compilation costs seconds,
so these properties run a tenth of the profile's examples (at least two):
a few in ``ci``, a hundred in ``nightly``.  ``ci`` and ``dev`` compile with the
``aot_eager`` backend (traces the graph and autograd, generates no code);
``nightly`` uses ``inductor``, the default backend that generates kernels.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from properties.cases import LayerCase
from properties.catalogue._common import assert_same_computation, comparable, exact_output, forward
from properties.profiles import profile_name
from properties.registry import layer_property

_VARIANT = dict(family="variants", examples_scale=0.1)


def compile_backend() -> str:
    return "inductor" if profile_name() == "nightly" else "aot_eager"


def _compare(case: LayerCase, module: torch.nn.Module, variant: torch.nn.Module, x: torch.Tensor, what: str) -> None:
    __tracebackhide__ = True
    eager = forward(case, module, x)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            transformed = forward(case, variant, x)
    except Exception as error:
        # Eager mode ran this input; the variant's own machinery did not (seen:
        # TorchScript's CUDA fuser failing to compile a kernel with nvrtc).
        _cannot(case, what, error)
    expected = exact_output(case, module, x)
    assert_same_computation(transformed, eager, expected, what=f"{case.spec.name}: {what} vs eager")


def _cannot(case: LayerCase, variant: str, error: Exception) -> None:
    # The first and the last line: TorchScript's first says only that "the
    # operation failed", its last says why (e.g. "nvrtc compilation failed").
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    why = " ... ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else ""
    pytest.skip(f"{variant} cannot run {case.spec.name} here: {type(error).__name__}: {why[:300]}")


@layer_property(**_VARIANT)
def matches_torchscript(case: LayerCase) -> None:
    """torch.jit.script(layer) computes what the layer computes."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still used
        try:
            scripted = torch.jit.script(module)
        except Exception as error:
            _cannot(case, "torch.jit.script", error)
    _compare(case, module, scripted, x, "torch.jit.script")


@layer_property(**_VARIANT)
def matches_torch_jit_trace(case: LayerCase) -> None:
    """torch.jit.trace(layer, x) computes what the layer computes, on x and on another
    input of the same shape (catches values frozen into the trace: .item(), Python
    branches on tensor values)."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    args, kwargs = case.arguments(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and "trace might not generalize" warnings
        try:
            if kwargs:
                raise TypeError(f"the layer is called with keyword arguments {sorted(kwargs)}, which a trace cannot take")
            traced = torch.jit.trace(module, args, check_trace=False)
        except Exception as error:
            _cannot(case, "torch.jit.trace", error)
    _compare(case, module, traced, x, "torch.jit.trace")
    # Same shape and dtype, other values (zeros become ones): a trace may
    # legitimately specialize on shapes, never on values.
    other = case.other_input(x)
    _compare(case, module, traced, other, "torch.jit.trace (traced on another input)")


@layer_property(**_VARIANT, warm_up="torch.compile")
def matches_torch_compile(case: LayerCase) -> None:
    """torch.compile(layer) computes what the layer computes (dynamic shapes)."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    backend = compile_backend()
    # A fresh cache per example: after a few recompilations of the same code
    # Dynamo silently falls back to eager, which would pass without checking.
    torch._dynamo.reset()
    compiled = torch.compile(module, backend=backend, dynamic=True)
    _compare(case, module, compiled, x, f"torch.compile(backend={backend!r})")
