"""One drawn example of a layer (``LayerCase``) and the seeding that makes it reproducible.

A case is what a property receives: the spec, the drawn constructor
arguments, the input recipe and the module seed.  It builds the layer and
runs it with torch's RNG seeded from the draw, so module initialization and
random layers depend only on what Hypothesis drew.  ``properties.strategies``
draws cases (``layer_cases``); this module does not import it: a case only
asks its recipe (``properties.recipes``) to ``materialize()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.nn.parameter import is_lazy

from properties.errors import SpecError, field_error
from properties.names import dtype_name
from properties.recipes import IndexRecipe, TensorRecipe
from properties.spec import LayerSpec, spec_call

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
    """One drawn example: constructor arguments, an input recipe and a module seed.

    ``layer_dtype`` is the layer's dtype where the input is not a float
    tensor (indices, masks); otherwise the input's dtype is the layer's.
    """

    spec: LayerSpec
    constructor_args: Mapping[str, Any]
    input_recipe: TensorRecipe | IndexRecipe
    module_seed: int
    layer_dtype: torch.dtype | None = None

    @property
    def dtype(self) -> torch.dtype:
        """The layer's dtype (the main input's, for float inputs)."""
        return self.input_recipe.dtype if self.layer_dtype is None else self.layer_dtype

    @property
    def device(self) -> str:
        return self.input_recipe.device

    @property
    def float_input(self) -> bool:
        return self.spec.input_dtype is None

    def make_input(self, *, requires_grad: bool = False) -> torch.Tensor:
        """A fresh copy of the drawn main input (an index or mask input never requires grad)."""
        x = self.input_recipe.materialize()
        return x.requires_grad_(requires_grad) if x.is_floating_point() else x

    def batch_ndim(self, x: torch.Tensor) -> int:
        """How many leading dimensions of ``x`` are batch dimensions."""
        return x.dim() - len(self.spec.event_shape(self.constructor_args))

    def arguments(self, x: Any, *, float_dtype: torch.dtype | None = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """How the layer is called on main input ``x``: ``spec.inputs``, or ``(x,), {}``.

        Further tensors come from the example's seed (see ``LayerSpec.inputs``),
        on ``x``'s device, so every call of the same case makes the same ones;
        floating ones in ``x``'s dtype, or where ``x`` holds indices in
        ``float_dtype`` (the layer's: the case's dtype unless the module was moved).
        """
        if self.spec.inputs is None:
            return (x,), {}
        maker = _Maker(self, x, float_dtype or self.dtype)
        made = spec_call(self.spec, "inputs", self.spec.inputs, self.constructor_args, x, maker)
        if not (isinstance(made, tuple) and len(made) == 2 and isinstance(made[1], Mapping)):
            raise field_error(
                self.spec.name,
                "inputs",
                f"returned {type(made).__name__}; it must return (args, kwargs), e.g. ((x, x, x), {{'need_weights': False}})",
                colon=False,
            )
        return tuple(made[0]), dict(made[1])

    def other_input(self, x: torch.Tensor) -> torch.Tensor:
        """Another input of ``x``'s shape and dtype, inside the declared domain, with other values
        (floats: ``1 - 2x``, capped by ``input_limit`` or the dtype's largest finite; indices: mirrored in their range; masks: negated)."""
        if x.dtype == torch.bool:
            return ~x
        if not x.is_floating_point():
            low, high = self.spec.index_range(self.constructor_args)
            return (low + high - 1) - x
        # Clamped before the cast: 1 - 2x beyond half the dtype's range would round to inf.
        limit = torch.finfo(x.dtype).max if self.spec.input_limit is None else self.spec.input_limit
        return (x.double() * -2 + 1).clamp(-limit, limit).to(x.dtype)

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
            return field_error(
                self.spec.name,
                "factory_kwargs",
                f"{_callable_name(self.spec.module)} takes no {'/'.join(f'{name}=' for name in names)} argument, "
                "and factory_kwargs=True (the default) passes it",
                "Set factory_kwargs=False (the gate then builds the layer and moves it with .to()), "
                "or give the constructor device= and dtype= arguments.",
            )

        unknown = [name for name in factory_kwargs if not _accepts_keyword(self.spec.module, name)]
        if unknown:
            raise refused(unknown)
        self._check_constructor_arguments(factory_kwargs)
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
            raise field_error(self.spec.name, "module", f"calling it returned {type(module).__name__}, not an nn.Module")
        if any(is_lazy(t) for t in (*module.parameters(), *module.buffers())):
            self._initialize_lazy(module, factory_kwargs)
        return module

    def _check_constructor_arguments(self, factory_kwargs: Mapping[str, Any]) -> None:
        """A call the constructor's signature cannot bind is the spec's ``constructor_args``
        at fault (a missing or unknown argument), not the constructor: bound before calling, so
        that a TypeError raised inside the constructor's body stays the layer's (field 'module')."""
        try:
            signature = inspect.signature(self.spec.module)
        except (TypeError, ValueError):
            return  # a builtin without a readable signature: the call itself will say
        given = {**self.constructor_args, **factory_kwargs}
        try:
            signature.bind(**given)
            return
        except TypeError as error:
            why = str(error)
        parameters = list(signature.parameters.values())
        varargs = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        missing = [p.name for p in parameters if p.kind not in varargs and p.default is p.empty and p.name not in given]
        by_keyword = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
        unknown = [name for name in self.constructor_args if name not in by_keyword and not takes_any]
        constructor = f"{_callable_name(self.spec.module)}{signature}"
        problems = []
        if missing:
            problems.append(f"{constructor} requires {', '.join(map(repr, missing))}, which constructor_args does not give")
        if unknown:
            problems.append(f"constructor_args gives {', '.join(map(repr, unknown))}, which {constructor} does not take")
        raise field_error(
            self.spec.name,
            "constructor_args",
            f"{'; '.join(problems) or f'{constructor}: {why}'} (it gives {dict(self.constructor_args)!r}; "
            "the layer is built as module(**constructor_args))",
            "Give constructor_args every argument the constructor requires, by name, and no other.",
        ) from None

    def _initialize_lazy(self, module: torch.nn.Module, factory_kwargs: Mapping[str, Any]) -> None:
        """A lazy module (nn.LazyLinear) learns its parameters' shapes from its first call, as
        torch's docs say: a dry run on the drawn input, RNG seeded, in eval mode (no running
        statistics move), where the module was built."""
        x = self.make_input()
        if x.is_floating_point():
            x = x.to(dtype=factory_kwargs.get("dtype", torch.get_default_dtype()))
        x = x.to(device=factory_kwargs.get("device", "cpu"))
        training = module.training
        with torch.no_grad():
            self.run(module.eval(), x)
        module.train(training)

    def run(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        """The layer called on ``x`` (see ``arguments``) with torch's RNG seeded from the drawn
        seed, so a random layer draws the same mask on every run of the example; the output
        the spec selects (``output``)."""
        return self.call(module, *self.arguments(x))

    def call(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        """``module(*args, **kwargs)`` as ``run`` calls it: RNG seeded, the spec's output selected."""
        with seeded(self.module_seed + 1):
            out = module(*args, **kwargs)
        return self.spec.select_output(out)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        dtype = "" if self.layer_dtype is None else f", dtype={dtype_name(self.layer_dtype)}"
        return (
            f"LayerCase({self.spec.name}, constructor_args={dict(self.constructor_args)!r}, "
            f"input={self.input_recipe!r}{dtype}, module_seed={self.module_seed})"
        )


class _Maker:
    """``make(shape, dtype=None, low=0, high=2)`` for ``LayerSpec.inputs``: further tensors
    from the example's seed, in the main input's value regime, on its device."""

    def __init__(self, case: LayerCase, x: torch.Tensor, float_dtype: torch.dtype) -> None:
        self.case, self.x, self.float_dtype, self.count = case, x, float_dtype, 0

    def __call__(self, shape: Any, dtype: torch.dtype | None = None, low: int = 0, high: int = 2) -> torch.Tensor:
        self.count += 1
        main = self.case.input_recipe
        seed = (main.seed * 1_000_003 + self.count) % 2**62
        shape = tuple(int(v) for v in shape)
        if dtype is None:
            dtype = self.x.dtype if self.x.is_floating_point() else self.float_dtype
        if not dtype.is_floating_point:
            values = torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed))
            values = values.bool() if dtype == torch.bool else values.to(dtype)
        else:
            values = main.further(shape, seed).to(dtype)
        return values.to(self.x.device)


def _accepts_keyword(function: Any, name: str) -> bool:
    """Whether ``function(..., name=...)`` binds (True when its signature cannot be read)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD or (p.name == name and p.kind is not p.POSITIONAL_ONLY) for p in parameters)


def _callable_name(function: Any) -> str:
    return getattr(function, "__qualname__", None) or repr(function)
