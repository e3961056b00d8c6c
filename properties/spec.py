"""The layer spec: everything the framework needs to know about one layer.

In the spirit of PyTorch's ``ModuleInfo``: a declarative record per layer, and
generic properties expanded over every registered record.  A property states
which facts it needs (see ``LayerProperty.requires``); a spec that does not
declare them gets that property reported as not applicable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from properties.errors import SpecError

__all__ = ["LayerSpec", "FLOAT_DTYPES", "DEVICES", "spec_call"]

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
DEVICES = ("cpu", "cuda", "mps")


# eq=False: specs hold functions and dicts; two specs are the same only if they are one object.
@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class LayerSpec:
    """How to build, feed and judge one layer.

    Building and feeding:

    ``name``
        Unique name; test ids and selection options use it.
    ``module``
        The class (or a factory) called as ``module(**constructor_args)``, plus
        ``device=``/``dtype=`` when ``factory_kwargs`` is true.
    ``constructor_args``
        A strategy of keyword-argument dicts, or one fixed dict.
    ``input_event_shape``
        The trailing dimensions every input has, as a tuple or as a function
        of the constructor arguments (``lambda args: (args["in_units"],)``).
    ``batch_dims``
        ``(min, max)`` number of leading dimensions before the event shape;
        ``(0, 3)`` means unbatched inputs and up to three batch dimensions.
    ``max_side``
        Largest size drawn for one batch dimension.
    ``allows_empty``
        Whether batch dimensions of size zero are drawn.
    ``dtypes``, ``devices``
        What the layer supports; examples draw from their intersection with
        what the run selects and the machine has.
    ``factory_kwargs``
        Whether the constructor takes ``device=`` and ``dtype=``.
    ``max_ladder_side``, ``max_elements``
        The size ladder's budget: on a few examples one batch dimension is a
        size at or around a power of two, up to ``max_ladder_side`` (0: never),
        keeping inputs within ``max_elements`` elements (see
        ``strategies.shapes``; ``strategies.sides`` does the same for sizes
        drawn in ``constructor_args``).

    Judging (the facts properties rely on):

    ``reference``
        ``reference(module, x)`` computes the exact output from the module's
        own parameters with the operations of ``properties.tolerances``, so the
        result carries its own error bound.  ``x`` is a ``Bounded`` input.
    ``equivalents``
        ``{name: make}``: ``make(module)`` returns another module that must
        compute the same function (for example ``nn.Linear`` + ReLU built
        from MyLinear's weights).
    ``nonnegative_output``, ``centering``
        The output is ``>= 0``; the output's mean over all elements is zero.
    ``per_sample``
        Batch positions are independent (a layer that couples the batch, as
        CenteredLayer does, leaves it false).
    ``train_eval_differ``
        Whether train and eval mode compute different things.
    ``parameter_shapes``
        ``parameter_shapes(constructor_args) -> {name: shape}``: every
        trainable parameter the layer must have.
    ``output_event_shape``
        The trailing output dimensions (tuple or function of the constructor
        arguments); the leading ones are the input's batch dimensions.
        Leave None for a layer whose output has the input's shape.
    ``relu_of``
        ``relu_of(module, x)``: the pre-activation, computed the way the
        layer computes it; the output must be exactly ``relu`` of it.
    ``parameter_init``
        ``{name: distribution}`` (see ``properties.distributions``): what the
        constructor draws each parameter from; a function of the constructor
        arguments where the distribution depends on them.
    ``accumulation``
        Where the layer accumulates sums and evaluates functions: ``"torch"``
        (float16/bfloat16 in float32, as torch's own kernels) or
        ``"working"`` (in the working dtype itself, a looser bound); the
        reference is evaluated under ``tolerances.accumulating(accumulation)``.
    """

    name: str
    module: Callable[..., torch.nn.Module]
    constructor_args: SearchStrategy[Mapping[str, Any]] | Mapping[str, Any] = dataclasses.field(
        default_factory=dict
    )
    input_event_shape: tuple[int, ...] | Callable[[Mapping[str, Any]], tuple[int, ...]] = ()
    batch_dims: tuple[int, int] = (0, 3)
    max_side: int = 4
    allows_empty: bool = True
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES
    devices: tuple[str, ...] = DEVICES
    factory_kwargs: bool = True

    reference: Callable[[torch.nn.Module, Any], Any] | None = None
    equivalents: Mapping[str, Callable[[torch.nn.Module], torch.nn.Module]] = dataclasses.field(
        default_factory=dict
    )
    nonnegative_output: bool = False
    centering: bool = False
    per_sample: bool = False
    train_eval_differ: bool = False
    parameter_shapes: Callable[[Mapping[str, Any]], Mapping[str, tuple[int, ...]]] | None = None
    output_event_shape: tuple[int, ...] | Callable[[Mapping[str, Any]], tuple[int, ...]] | None = None
    relu_of: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None
    parameter_init: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    accumulation: str = "torch"
    max_ladder_side: int = 4096
    max_elements: int = 2**20

    def __post_init__(self) -> None:
        def bad(field: str, problem: str, fix: str) -> SpecError:
            return SpecError(f"LayerSpec {self.name!r}, field {field!r}: {problem}. {fix}")

        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise SpecError(
                f"LayerSpec name {self.name!r} is not usable as a test id: "
                "use letters, digits and underscores, not starting with a digit."
            )
        if not callable(self.module):
            raise bad("module", f"{self.module!r} is not callable", "Pass the nn.Module class or a factory.")
        if not isinstance(self.constructor_args, (SearchStrategy, Mapping)):
            raise bad(
                "constructor_args",
                f"got {type(self.constructor_args).__name__}",
                "Pass a dict of keyword arguments or a Hypothesis strategy of such dicts.",
            )
        for field in ("input_event_shape", "output_event_shape"):
            value = getattr(self, field)
            if not (callable(value) or _is_shape(value) or (value is None and field == "output_event_shape")):
                raise bad(
                    field,
                    f"{value!r} is neither a shape nor a function",
                    "Pass a tuple of non-negative ints, or a function of the constructor arguments returning one.",
                )
        low_high = self.batch_dims
        if not (
            isinstance(low_high, tuple)
            and len(low_high) == 2
            and all(isinstance(v, int) for v in low_high)
            and 0 <= low_high[0] <= low_high[1]
        ):
            raise bad("batch_dims", f"{low_high!r} is not (min, max) with 0 <= min <= max", "Pass e.g. (0, 3).")
        if not (isinstance(self.max_side, int) and self.max_side >= 1):
            raise bad("max_side", f"{self.max_side!r} is not a positive int", "Pass e.g. 4.")
        if not (isinstance(self.max_ladder_side, int) and self.max_ladder_side >= 0):
            raise bad(
                "max_ladder_side", f"{self.max_ladder_side!r} is not an int >= 0", "Pass e.g. 4096, or 0 for no ladder."
            )
        if not (isinstance(self.max_elements, int) and self.max_elements >= 1):
            raise bad("max_elements", f"{self.max_elements!r} is not a positive int", "Pass e.g. 2**20.")
        unknown = [d for d in self.dtypes if d not in FLOAT_DTYPES]
        if not self.dtypes or unknown:
            raise bad(
                "dtypes",
                f"{unknown or 'nothing'} is not among the supported floating dtypes",
                f"Choose from {', '.join(map(str, FLOAT_DTYPES))}.",
            )
        unknown = [d for d in self.devices if d not in DEVICES]
        if not self.devices or unknown:
            raise bad("devices", f"{unknown or 'nothing'} is not a known device", f"Choose from {DEVICES}.")
        for field in ("reference", "parameter_shapes", "relu_of"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise bad(field, f"{value!r} is not callable", "Pass a function, or leave it out.")
        if not isinstance(self.equivalents, Mapping) or not all(
            isinstance(k, str) and callable(v) for k, v in self.equivalents.items()
        ):
            raise bad("equivalents", "is not a dict of name -> function", "Pass {'name': make_twin_from(module)}.")
        if self.accumulation not in ("torch", "working"):
            raise bad(
                "accumulation",
                f"{self.accumulation!r} is not 'torch' or 'working'",
                "Leave it out (float16/bfloat16 accumulate in float32, as torch does), "
                "or pass 'working' for a layer that accumulates in its own dtype.",
            )

    # -- derived facts -------------------------------------------------------

    def constructor_args_strategy(self) -> SearchStrategy[Mapping[str, Any]]:
        if isinstance(self.constructor_args, SearchStrategy):
            return self.constructor_args
        return st.just(dict(self.constructor_args))

    def event_shape(self, constructor_args: Mapping[str, Any]) -> tuple[int, ...]:
        """The trailing input dimensions for these constructor arguments."""
        return self._shape_field("input_event_shape", constructor_args)

    def output_shape(self, constructor_args: Mapping[str, Any], input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape the spec declares for an input of ``input_shape``."""
        if self.output_event_shape is None:
            return tuple(input_shape)
        batch = input_shape[: len(input_shape) - len(self.event_shape(constructor_args))]
        return (*batch, *self._shape_field("output_event_shape", constructor_args))

    def _shape_field(self, field: str, constructor_args: Mapping[str, Any]) -> tuple[int, ...]:
        value = getattr(self, field)
        if not callable(value):
            return tuple(value)
        try:
            shape = value(constructor_args)
        except Exception as error:
            raise SpecError(
                f"LayerSpec {self.name!r}, field {field!r} raised "
                f"{type(error).__name__}: {error} for constructor arguments {dict(constructor_args)!r}. "
                "Make it a function of the constructor arguments the spec draws."
            ) from error
        if not _is_shape(shape):
            raise SpecError(
                f"LayerSpec {self.name!r}, field {field!r} returned {shape!r} "
                f"for constructor arguments {dict(constructor_args)!r}: expected a tuple of non-negative ints."
            )
        return tuple(shape)

    def __repr__(self) -> str:
        return f"LayerSpec({self.name})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # Hypothesis' failure report: the name, not every field


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


def _is_shape(value: object) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and v >= 0 for v in value)
