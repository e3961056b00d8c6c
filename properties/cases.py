"""One drawn example of a layer (``LayerCase``) and the seeding that makes it reproducible.

A case is what a property receives: the spec, the drawn constructor
arguments, the input recipe and the module seed.  It builds the layer and
runs it with torch's RNG seeded from the draw, so module initialization and
random layers depend only on what Hypothesis drew.  ``properties.strategies``
draws cases (``layer_cases``); this module does not import it: a case only
asks its recipe to ``materialize()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch

from properties.errors import SpecError
from properties.spec import LayerSpec, spec_call

if TYPE_CHECKING:
    from properties.strategies import TensorRecipe

__all__ = ["LayerCase", "seeded"]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU generator seeded, restoring its state after.

    Module initialization and random layers (dropout) then depend only on what
    Hypothesis drew, and nothing leaks into other tests.  About 2 µs, where
    ``torch.manual_seed`` costs ~100 µs (it seeds every device).
    """
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """One drawn example: constructor arguments, an input recipe and a module seed."""

    spec: LayerSpec
    constructor_args: Mapping[str, Any]
    input_recipe: TensorRecipe
    module_seed: int

    @property
    def dtype(self) -> torch.dtype:
        return self.input_recipe.dtype

    @property
    def device(self) -> str:
        return self.input_recipe.device

    def make_input(self, *, requires_grad: bool = False) -> torch.Tensor:
        """A fresh copy of the drawn input."""
        return self.input_recipe.materialize().requires_grad_(requires_grad)

    def build(self, *, dtype: torch.dtype | None = None, device: str | None = None) -> torch.nn.Module:
        """The layer, initialized from the drawn seed, in train mode.

        Built on the CPU and moved, so that the same seed gives the same
        parameters on every device.
        """
        dtype = self.dtype if dtype is None else dtype
        device = self.device if device is None else device
        module = self.construct(**({"dtype": dtype} if self.spec.factory_kwargs else {}))
        return module.to(device=device, dtype=dtype).train()

    def construct(self, **factory_kwargs: Any) -> torch.nn.Module:
        """Call the spec's constructor with the drawn arguments, RNG seeded from the draw."""

        def refused(names: list[str]) -> SpecError:
            return SpecError(
                f"LayerSpec {self.spec.name!r}, field 'factory_kwargs': {_callable_name(self.spec.module)} takes no "
                f"{'/'.join(f'{name}=' for name in names)} argument, and factory_kwargs=True (the default) passes it. "
                "Set factory_kwargs=False (the gate then builds the layer and moves it with .to()), "
                "or give the constructor device= and dtype= arguments."
            )

        unknown = [name for name in factory_kwargs if not _accepts_keyword(self.spec.module, name)]
        if unknown:
            raise refused(unknown)
        with seeded(self.module_seed):
            try:
                module = spec_call(self.spec, "module", self.spec.module, **self.constructor_args, **factory_kwargs)
            except SpecError as error:
                # A constructor that hands **kwargs on (to nn.Module.__init__, say) refuses them there.
                cause = error.__cause__
                named = [n for n in factory_kwargs if isinstance(cause, TypeError) and f"argument '{n}'" in str(cause)]
                if named:
                    raise refused(named) from cause
                raise
        if not isinstance(module, torch.nn.Module):
            raise SpecError(
                f"LayerSpec {self.spec.name!r}, field 'module': calling it returned {type(module).__name__}, "
                "not an nn.Module."
            )
        return module

    def run(self, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``module(x)`` with torch's RNG seeded from the drawn seed (for dropout & co)."""
        with seeded(self.module_seed + 1):
            return module(x)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        return (
            f"LayerCase({self.spec.name}, constructor_args={dict(self.constructor_args)!r}, "
            f"input={self.input_recipe!r}, module_seed={self.module_seed})"
        )


def _accepts_keyword(function: Any, name: str) -> bool:
    """Whether ``function(..., name=...)`` binds (True when its signature cannot be read)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD or (p.name == name and p.kind is not p.POSITIONAL_ONLY) for p in parameters)


def _callable_name(function: Any) -> str:
    return getattr(function, "__qualname__", None) or repr(function)
