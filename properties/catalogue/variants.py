"""Execution variants, in the spirit of chex's variants: the same layer scripted,
traced and compiled computes what eager mode computes.

A variant that cannot run on this platform at all (a trivial module fails:
no compiler, no nvrtc) is reported as skipped with the reason, decided once
per process before any example is drawn.  A variant that fails on the layer
where eager mode works is a failure: the spec declares it expected if it is.
Compilation costs seconds, so these properties run a tenth of the profile's examples (at least two):
a few in ``ci``, a hundred in ``nightly``.  ``ci`` and ``dev`` compile with the
``aot_eager`` backend (traces the graph and autograd, generates no code);
``nightly`` uses ``inductor``, the default backend that generates kernels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from properties.cases import LayerCase
from properties.authoring import LayerRaised, assert_same_computation, comparable, exact_output, forward
from properties.profiles import profile_name
from properties.registry import layer_property
from properties.selection import available_devices

_VARIANT = dict(examples_scale=0.1)

# A variant that fails where eager mode works is a finding; a spec that knows
# its layer cannot be scripted/traced/compiled says so, and this tells how.
_HOW_TO_DECLARE = (
    "If the layer is known not to support this variant, declare it an expected failure "
    "of this property in the spec, with the reason (or deselect it: --properties / -k)."
)


def compile_backend() -> str:
    return "inductor" if profile_name() == "nightly" else "aot_eager"


class _Probe(torch.nn.Module):
    """The simplest layer every variant must handle: an affine map and a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.weight + 1)


def _platform_probe(variant: str, make: Callable[[torch.nn.Module, torch.Tensor], Any]) -> Callable[[], str | None]:
    """Why ``variant`` cannot run here at all (no compiler, no nvrtc), or None.

    Runs the variant of a trivial module on every available device, three
    times (TorchScript's fuser compiles kernels on the second or third call).
    A failure here says nothing about the layer under test: its tests skip.
    """

    def probe() -> str | None:
        for device in available_devices():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    module = _Probe().to(device)
                    x = torch.ones(4, 3, device=device)
                    transformed = make(module, x)
                    with torch.no_grad():
                        for _ in range(3):
                            transformed(x)
            except Exception as error:
                return f"{variant} cannot run a trivial module on {device}: {type(error).__name__}: {_why(error)}"
        return None

    return probe


def _why(error: Exception) -> str:
    # The first and the last line: TorchScript's first says only that "the
    # operation failed", its last says why (e.g. "nvrtc compilation failed").
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ... ".join(dict.fromkeys([lines[0], lines[-1]]))[:300] if lines else ""


def _script(module: torch.nn.Module, x: torch.Tensor) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still used
        scripted = torch.jit.script(module)
    if not hasattr(scripted, "forward"):
        # TorchScript compiles an overloaded forward only as its overloads, for scripted callers.
        raise RuntimeError(
            "the scripted module has no forward: an overloaded forward (as torch's nn.LSTM, nn.GRU and "
            "nn.RNN have) is compiled only as forward__0, forward__1, ..., for other scripted code to call"
        )
    return scripted


def _trace(module: torch.nn.Module, args: torch.Tensor | tuple[Any, ...]) -> Any:
    """Traced on an input, or on the tuple of positional arguments of a multi-input layer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and "trace might not generalize" warnings
        return torch.jit.trace(module, args, check_trace=False)


def _compile(module: torch.nn.Module, x: torch.Tensor) -> Any:
    # A fresh cache each time: after a few recompilations of the same code
    # Dynamo silently falls back to eager, which would pass without checking.
    torch._dynamo.reset()
    return torch.compile(module, backend=compile_backend(), dynamic=True)


def _transform(case: LayerCase, make: Callable[[torch.nn.Module, torch.Tensor], Any], module: torch.nn.Module, x: torch.Tensor, what: str) -> Any:
    __tracebackhide__ = True
    try:
        return make(module, x)
    except Exception as error:
        raise AssertionError(
            f"{case.spec.name}: {what} raised {type(error).__name__} on a layer eager mode runs: {_why(error)}. "
            + _HOW_TO_DECLARE
        ) from None


def _rewinder(module: torch.nn.Module) -> Callable[[], None]:
    """What puts the module's parameters and buffers back to their values now, in place, where a
    scripted, traced or compiled variant shares them."""
    saved = [(t, t.detach().clone()) for t in (*module.parameters(), *module.buffers())]

    def rewind() -> None:
        with torch.no_grad():
            for tensor, value in saved:
                tensor.copy_(value)

    return rewind


def _compare(case: LayerCase, module: torch.nn.Module, variant: Any, x: torch.Tensor, what: str) -> None:
    __tracebackhide__ = True
    # The variant starts from the state eager mode saw: a call may advance it (spectral_norm's
    # power iteration, Embedding(max_norm=)'s renormalization, in place).
    rewind = _rewinder(module)
    eager = forward(case, module, x)
    rewind()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            transformed = forward(case, variant, x)
    except LayerRaised as error:
        raise AssertionError(f"{error} -- under {what}, where eager mode runs this input. {_HOW_TO_DECLARE}") from None
    expected = exact_output(case, module, x)
    assert_same_computation(transformed, eager, expected, what=f"{case.spec.name}: {what} vs eager")


@layer_property(**_VARIANT, platform_probe=_platform_probe("torch.jit.script", _script))
def matches_torchscript(case: LayerCase) -> None:
    """torch.jit.script(layer) computes what the layer computes."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    scripted = _transform(case, _script, module, x, "torch.jit.script")
    _compare(case, module, scripted, x, "torch.jit.script")


@layer_property(**_VARIANT, platform_probe=_platform_probe("torch.jit.trace", _trace))
def matches_torch_jit_trace(case: LayerCase) -> None:
    """torch.jit.trace(layer, x) computes what the layer computes, on x and on another
    input of the same shape (catches values frozen into the trace: .item(), Python
    branches on tensor values)."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    args, kwargs = case.arguments(x)
    if kwargs:
        # A property of the spec, the same on every example: decided before any comparison.
        pytest.skip(f"torch.jit.trace cannot pass the keyword arguments {sorted(kwargs)} the layer is called with")
    traced = _transform(case, _trace, module, args, "torch.jit.trace")
    _compare(case, module, traced, x, "torch.jit.trace")
    # Same shape and dtype, other values (zeros become ones): a trace may
    # legitimately specialize on shapes, never on values.
    other = case.other_input(x)
    _compare(case, module, traced, other, "torch.jit.trace (traced on another input)")


@layer_property(**_VARIANT, warm_up="torch.compile", platform_probe=_platform_probe("torch.compile", _compile))
def matches_torch_compile(case: LayerCase) -> None:
    """torch.compile(layer) computes what the layer computes (dynamic shapes)."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    compiled = _transform(case, _compile, module, x, f"torch.compile(backend={compile_backend()!r})")
    _compare(case, module, compiled, x, f"torch.compile(backend={compile_backend()!r})")
