"""The layer spec: everything the framework needs to know about one layer.

In the spirit of PyTorch's ``ModuleInfo``: a declarative record per layer, and
generic properties expanded over every registered record.  A property states
which facts it needs (see ``LayerProperty.requires``); a spec that does not
declare them gets that property reported as not applicable.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from properties.errors import SpecError, check_range, field_error
from properties.expected import ExpectedFailure
from properties.names import DEVICE_NAMES, DTYPE_NAMES

__all__ = ["DEVICES", "ExpectedFailure", "FLOAT_DTYPES", "INDEX_DTYPES", "LayerSpec", "spec_call"]

FLOAT_DTYPES = tuple(getattr(torch, name) for name in DTYPE_NAMES)
DEVICES = DEVICE_NAMES
INVARIANCES = ("shift", "scale")
# Non-float inputs a spec may declare (``input_dtype``): indices and masks.
INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)


# eq=False: specs hold functions and dicts; two specs are the same only if they are one object.
@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class LayerSpec:
    """How to build, feed and judge one layer.

    Building and feeding:

    ``name``
        Unique name; test ids and selection options use it.
    ``module``
        The class (or a factory) called as ``module(**constructor_args)``, plus
        ``device=``/``dtype=`` when ``factory_kwargs`` is true.  A lazy module
        (``nn.LazyLinear``) is then called once on the drawn input, RNG seeded
        and in eval mode, to give its parameters their shapes.
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
        constructor draws each parameter (or buffer) from, continuous or
        exact (``ones()``, ``zeros()``, ``Constant(c)``, ``Eye()``); a value
        may be a function of the constructor arguments, and so may the whole
        dict (a layer whose bias is optional: ``lambda args: {...}`` that
        leaves ``"bias"`` out when ``args["bias"]`` is false).

    ``accumulation``
        Where the layer accumulates sums and evaluates functions: ``"torch"``
        (float16/bfloat16 in float32, as torch's own kernels) or
        ``"working"`` (in the working dtype itself, a looser bound); the
        reference is evaluated under ``tolerances.accumulating(accumulation)``.

    The input domain (inputs outside it are never drawn; an input inside it
    that makes the layer raise is a failure of the layer):

    ``batch_sides``
        ``{dim: (min, max)}``: the sizes of batch dimension ``dim`` (0: the
        first) where they differ from ``1..max_side``; ``{0: (2, 4)}`` is a
        batch of at least two (BatchNorm in train mode).  A minimum above 0
        also rules out empty batches there.
    ``input_limit``
        The largest magnitude drawn for the input (and every further input):
        for layers whose correct result overflows beyond it (attention
        scores grow with the square of the input).
    ``input_dtype``, ``input_range``
        A non-float input: an integer dtype with ``(low, high)`` (high
        excluded; a function of the constructor arguments), e.g. indices
        ``(0, num_embeddings)``, or ``torch.bool`` for a mask.  The layer's
        own dtype is still drawn from ``dtypes``; no property asks for a
        gradient of such an input, and those that need a float input
        (rescaling it, finite differences in it) are not applicable.

    Calling the layer:

    ``inputs``
        ``inputs(constructor_args, x, make) -> (args, kwargs)``: how the
        layer is called, given the drawn main input ``x`` (the one that
        properties slice, re-lay-out and differentiate).  ``make(shape,
        dtype=None, low=0, high=2)`` makes a further tensor, from the
        example's seed in the main input's value regime (an integer or bool
        dtype draws from ``low..high-1``), so it costs no Hypothesis choice
        and is the same every time the case is run.  Default: ``(x,), {}``.
        The reference then receives the same arguments, tensors as exact
        ``Bounded`` values.
    ``output``
        Which output the properties check when the layer returns a tuple or
        dict: an index, a key, or a function of the output.
    ``stochastic``
        The layer draws from torch's RNG in train mode (dropout).  Each run
        of an example seeds the RNG from the draw, so the same example gives
        the same mask (``is_deterministic``, gradient checks and
        serialization check exactly that); properties that compare two
        different computations (a slice with the batch, a layout, a
        compiled variant, a twin, the reference) run in eval mode, so no
        two different random masks are ever compared.  ``matches_reference``
        checks eval mode only (the reference describes eval).
    ``supports_gradgrad``
        Whether second derivatives exist (False: gradgradcheck is skipped,
        recorded as a Hypothesis event; gradcheck still runs).
    ``expected_failures``
        ``ExpectedFailure`` records: properties known to fail, where, and why.

    Laws of a layer family (``properties.catalogue.laws``; each needs a
    ``reference`` for its error bound; dims index the input and the output):

    ``invariances``
        Some of ``("shift", "scale")``: ``f(a*x + c) = f(x)`` for a scalar
        ``c`` (shift) and ``a > 0`` (scale): LayerNorm both, RMSNorm scale,
        softmax shift.
    ``sums_to_one``
        ``(dim,)``: the output along ``dim`` is a probability distribution
        (non-negative, summing to one), as softmax's.
    ``log_sums_to_one``
        ``(dim,)``: the output's ``exp`` along ``dim`` sums to one, as log_softmax's.
    ``causal_along``
        ``(dim,)``: the output at position ``i`` along ``dim`` depends on no
        input at a position ``j > i`` (causal attention).
    ``permutation_equivariant_along``
        ``(dim,)``: permuting the input along ``dim`` permutes the output the
        same way (attention without positions).
    ``linear_in_input``
        ``f(a*x + b*y) = a*f(x) + b*f(y) + (1 - a - b)*f(0)``: linear without
        a bias (``f(0) = 0``), affine with one (Linear, convolutions).
    ``dropout_probability``
        The constructor argument holding a dropout layer's drop probability
        (``"p"``): the same seed gives the same mask, eval mode is the
        identity, train mode keeps each element with probability ``1 - p``
        and scales it by ``1 / (1 - p)``.
    ``dropout_mask_shared_along``
        The input dims (negative: counted from the end) along which one
        random draw keeps or drops all elements together: ``(-1,)`` for
        ``nn.Dropout1d``, ``(-2, -1)`` for ``nn.Dropout2d`` (whole channels).
        The dropout laws then count independent draws, not elements.
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
    parameter_init: Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]] = dataclasses.field(
        default_factory=dict
    )
    accumulation: str = "torch"
    max_ladder_side: int = 4096
    max_elements: int = 2**20
    batch_sides: Mapping[int, tuple[int, int]] = dataclasses.field(default_factory=dict)
    input_limit: float | None = None
    input_dtype: torch.dtype | None = None
    input_range: tuple[int, int] | Callable[[Mapping[str, Any]], tuple[int, int]] | None = None
    inputs: Callable[..., tuple[Sequence[Any], Mapping[str, Any]]] | None = None
    output: int | str | Callable[[Any], torch.Tensor] | None = None
    stochastic: bool = False
    supports_gradgrad: bool = True
    expected_failures: Sequence[ExpectedFailure] = ()
    invariances: tuple[str, ...] = ()
    sums_to_one: tuple[int, ...] = ()
    log_sums_to_one: tuple[int, ...] = ()
    causal_along: tuple[int, ...] = ()
    permutation_equivariant_along: tuple[int, ...] = ()
    linear_in_input: bool = False
    dropout_probability: str | None = None
    dropout_mask_shared_along: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        bad = functools.partial(field_error, self.name)

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
        problem = check_range(self.batch_dims, what=repr(self.batch_dims))
        if problem:
            raise bad("batch_dims", problem, "Pass e.g. (0, 3).")
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
        self._check_input_domain(bad)
        for field in ("inputs",):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise bad(field, f"{value!r} is not callable", "Pass a function, or leave it out.")
        if not (self.output is None or isinstance(self.output, (int, str)) or callable(self.output)):
            raise bad("output", f"{self.output!r} is not an index, a key or a function", "Pass e.g. 0 for the first of a tuple.")
        if not (isinstance(self.parameter_init, Mapping) or callable(self.parameter_init)):
            raise bad("parameter_init", f"got {type(self.parameter_init).__name__}", "Pass a dict, or a function of the constructor arguments returning one.")
        if not isinstance(self.expected_failures, (tuple, list)) or not all(
            isinstance(e, ExpectedFailure) and isinstance(e.property, str) and isinstance(e.reason, str) and e.reason.strip()
            for e in self.expected_failures
        ):
            raise bad(
                "expected_failures",
                "is not a list of ExpectedFailure(property=..., reason=...) with a reason",
                "Say why each property is expected to fail: the reason is reported with the xfail.",
            )
        if self.accumulation not in ("torch", "working"):
            raise bad(
                "accumulation",
                f"{self.accumulation!r} is not 'torch' or 'working'",
                "Leave it out (float16/bfloat16 accumulate in float32, as torch does), "
                "or pass 'working' for a layer that accumulates in its own dtype.",
            )
        if not (isinstance(self.invariances, tuple) and set(self.invariances) <= set(INVARIANCES)):
            raise bad("invariances", f"{self.invariances!r} is not a tuple drawn from {INVARIANCES}", "Pass e.g. ('shift', 'scale').")
        for field in ("sums_to_one", "log_sums_to_one", "causal_along", "permutation_equivariant_along"):
            value = getattr(self, field)
            if not (value == () or (isinstance(value, tuple) and len(value) == 1 and type(value[0]) is int)):
                raise bad(field, f"{value!r} is not one dim in a tuple", "Pass (dim,), e.g. (-1,), or leave it out.")
        if not isinstance(self.linear_in_input, bool):
            raise bad("linear_in_input", f"{self.linear_in_input!r} is not a bool", "Pass True or False.")
        if self.dropout_probability is not None and not (
            isinstance(self.dropout_probability, str) and self.dropout_probability.isidentifier()
        ):
            raise bad(
                "dropout_probability", f"{self.dropout_probability!r} is not an argument name",
                "Pass the name of the constructor argument holding the drop probability, e.g. 'p'.",
            )
        shared = self.dropout_mask_shared_along
        if not (
            isinstance(shared, tuple) and all(type(d) is int and d < 0 for d in shared) and len(set(shared)) == len(shared)
        ):
            raise bad(
                "dropout_mask_shared_along", f"{shared!r} is not a tuple of distinct negative dims",
                "Pass the trailing dims one draw covers, e.g. (-2, -1) for nn.Dropout2d, or leave it out.",
            )
        if shared and _is_shape(self.input_event_shape) and min(shared) < -len(self.input_event_shape):
            raise bad(
                "dropout_mask_shared_along", f"{shared!r} reaches beyond the input's event shape {self.input_event_shape!r}",
                "Name trailing dims of the event shape, e.g. (-2, -1) for (C, H, W).",
            )
        if shared and self.dropout_probability is None:
            raise bad(
                "dropout_mask_shared_along", "is set without dropout_probability",
                "Name the drop probability's constructor argument in dropout_probability too (e.g. 'p').",
            )

    def _check_input_domain(self, bad: Callable[[str, str, str], SpecError]) -> None:
        """Static checks of the input domain: a spec that can yield no valid input is one error, here."""
        low_dims, high_dims = self.batch_dims
        if not isinstance(self.batch_sides, Mapping):
            raise bad("batch_sides", f"got {type(self.batch_sides).__name__}", "Pass {dim: (min, max)}, e.g. {0: (2, 4)}.")
        for dim, sides in self.batch_sides.items():
            if not (isinstance(dim, int) and 0 <= dim < max(high_dims, 1)):
                raise bad(
                    "batch_sides",
                    f"dimension {dim!r} is not a batch dimension (batch_dims={self.batch_dims})",
                    "Key it by the batch dimension's position: 0 for the first.",
                )
            problem = check_range(sides, what=f"{sides!r} for dimension {dim}")
            if problem:
                raise bad("batch_sides", problem, "Pass e.g. (2, 4).")
            if dim < low_dims and sides[1] == 0 and not self.allows_empty:
                raise bad("batch_sides", f"dimension {dim} is always present and may only have size 0, but allows_empty is False", "Allow a positive size.")
        if self.input_limit is not None and not (isinstance(self.input_limit, (int, float)) and self.input_limit > 0):
            raise bad("input_limit", f"{self.input_limit!r} is not a positive number", "Pass e.g. 1e3, or leave it out.")
        if self.input_dtype is not None and self.input_dtype not in INDEX_DTYPES:
            raise bad(
                "input_dtype",
                f"{self.input_dtype!r} is not an integer or bool dtype",
                f"Choose from {', '.join(map(str, INDEX_DTYPES))}, or leave it out for float inputs.",
            )
        if self.input_range is not None:
            if self.input_dtype is None:
                raise bad("input_range", "is set for a float input", "Set input_dtype (e.g. torch.long) too, or use input_limit for floats.")
            if not callable(self.input_range):
                self.index_range({})  # validates a fixed range now

    # -- derived facts -------------------------------------------------------

    def index_range(self, constructor_args: Mapping[str, Any]) -> tuple[int, int]:
        """``(low, high)`` of a non-float input (high excluded): ``input_range``, else all of ``input_dtype``."""
        if self.input_range is None:
            if self.input_dtype == torch.bool:
                return (0, 2)
            info = torch.iinfo(self.input_dtype)
            return (info.min, info.max + 1)
        value = self.input_range
        if callable(value):
            value = spec_call(self, "input_range", value, constructor_args)
        if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value) and value[0] < value[1]):
            given = f"for constructor arguments {dict(constructor_args)!r} " if callable(self.input_range) else ""
            problem = f"{value!r} {given}is not (low, high) with low < high, so there is no valid input"
            raise field_error(self.name, "input_range", problem, "Pass e.g. (0, num_embeddings).")
        return value

    def initialization(self, constructor_args: Mapping[str, Any]) -> dict[str, Any]:
        """``{name: distribution}`` declared for these constructor arguments."""
        declared = self.parameter_init
        if callable(declared):
            declared = spec_call(self, "parameter_init", declared, constructor_args)
        resolved = {}
        for name, distribution in dict(declared).items():
            if not hasattr(distribution, "cdf") and not hasattr(distribution, "expected") and callable(distribution):
                distribution = spec_call(self, "parameter_init", distribution, constructor_args)
            resolved[name] = distribution
        return resolved

    def expected_failures_of(self, prop: str) -> list[ExpectedFailure]:
        return [e for e in self.expected_failures if e.property == prop]

    def select_output(self, output: Any) -> Any:
        """The output the properties check, per ``output``."""
        if self.output is None:
            return output
        if callable(self.output) and not isinstance(self.output, (int, str)):
            return spec_call(self, "output", self.output, output)
        try:
            return output[self.output]
        except (IndexError, KeyError, TypeError) as error:
            problem = f"{self.output!r} does not select from a {type(output).__name__} ({type(error).__name__}: {error})"
            raise field_error(self.name, "output", problem, "Pass an index or key the layer returns.") from None

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
            raise field_error(
                self.name,
                field,
                f"raised {type(error).__name__}: {error} for constructor arguments {dict(constructor_args)!r}",
                "Make it a function of the constructor arguments the spec draws.",
                colon=False,
            ) from error
        if not _is_shape(shape):
            raise field_error(
                self.name,
                field,
                f"returned {shape!r} for constructor arguments {dict(constructor_args)!r}: expected a tuple of non-negative ints",
                colon=False,
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
        raise field_error(
            spec.name,
            field,
            f"raised {type(error).__name__}: {error}",
            "This is a problem with the spec, not a verdict on the layer: fix the field.",
            colon=False,
        ) from error


def _is_shape(value: object) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and v >= 0 for v in value)
