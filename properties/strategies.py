"""Hypothesis strategies for dtypes, devices, shapes, tensors and layer examples.

Tensors cost O(1) Hypothesis choices whatever their size (the encoding:
``properties.encoding``; what a drawn tensor is made of: ``properties.recipes``).
Shrinking moves towards small shapes, then a single non-zero element, then
small seeds: no splices, zeros, then constants.  Nothing here touches torch's
global RNG state except inside ``seeded()``, which restores it.  The public
strategies show the call that made them (``tensors(shape=(2, 3), dtype=torch.float32)``),
as Hypothesis' own do.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies._internal.lazy import LazyStrategy  # private: Hypothesis' own repr-carrying wrapper

from properties.cases import LayerCase, seeded
from properties.domains import ALL_REGIMES, ValueDomain
from properties.encoding import NUMBERS, draw_index_recipe, draw_recipe, edges, finite_floats, integers, mix
from properties.errors import check_range
from properties.recipes import IndexRecipe, TensorRecipe, moderate_limit
from properties.selection import Pairs, available_devices, run_pairs
from properties.spec import DEVICES, FLOAT_DTYPES, LayerSpec

__all__ = [
    "IndexRecipe",
    "LayerCase",
    "TensorRecipe",
    "ValueDomain",
    "available_devices",
    "devices",
    "dtypes",
    "input_recipes",
    "ladder_sizes",
    "layer_cases",
    "moderate_limit",
    "seeded",
    "shapes",
    "sides",
    "special_values",
    "tensor_recipes",
    "tensors",
]

_NUMBERS = NUMBERS  # moved: wave-3 removes (benchmarks/generation.py reads strategies._NUMBERS)

_Definition = TypeVar("_Definition", bound=Callable[..., st.SearchStrategy[Any]])


def _readable(definition: _Definition) -> _Definition:
    """``definition``'s strategies show the call that made them, ``sides(max_side=8)``.

    The strategy is built at the call, as before (bad arguments raise there),
    and wrapped in Hypothesis' own lazy strategy with that repr: Hypothesis
    draws through it to the built strategy, with the same label and no span of
    its own, so the same choices draw the same values.
    """

    @functools.wraps(definition)
    def strategy(*args: Any, **kwargs: Any) -> st.SearchStrategy[Any]:
        built = definition(*args, **kwargs)
        call = ", ".join([*map(repr, args), *(f"{name}={value!r}" for name, value in kwargs.items())])
        return LazyStrategy(lambda: built, (), {}, force_repr=f"{definition.__name__}({call})")

    return strategy  # type: ignore[return-value]


@_readable
def dtypes(*, allowed: Sequence[torch.dtype] = FLOAT_DTYPES) -> st.SearchStrategy[torch.dtype]:
    """Floating dtypes, shrinking towards the first of ``allowed`` (float32 by default)."""
    allowed = tuple(allowed)
    unknown = [d for d in allowed if d not in FLOAT_DTYPES]
    if not allowed or unknown:
        raise InvalidArgument(f"dtypes(allowed={allowed!r}): choose one or more of {FLOAT_DTYPES}.")
    return st.sampled_from(allowed)


@_readable
def devices(*, allowed: Sequence[str] = DEVICES) -> st.SearchStrategy[str]:
    """The devices of ``allowed`` that this machine has, shrinking towards cpu."""
    unknown = [d for d in allowed if d not in DEVICES]
    if unknown:
        raise InvalidArgument(f"devices(allowed={tuple(allowed)!r}): unknown {unknown}; choose from {DEVICES}.")
    present = [d for d in available_devices() if d in allowed]
    if not present:
        raise InvalidArgument(
            f"devices(allowed={tuple(allowed)!r}): none of these is available here "
            f"(available: {available_devices()})."
        )
    return st.sampled_from(present)


# The size ladder: kernels switch code paths at sizes such as 16, 32, 64, 256,
# 1024 and 4096 (vector widths, block sizes, thresholds), and mishandle the
# odd tails 2^k ± 1; ordinary draws stay far below.  One drawn number decides
# whether to climb and to which rung (see _ladder_rung); shrinking it to 0
# leaves the ladder.  Rare enough that large tensors cost little on average,
# frequent enough that the ci profile's 100 examples reach them
# (tests/test_mutants.py: the size mutants).
LADDER_ODDS = 3
_LADDER_NUMBERS = integers(0, 2**24 - 1)


@functools.lru_cache(maxsize=None)
def ladder_sizes(above: int, up_to: int) -> tuple[int, ...]:
    """2^k - 1, 2^k and 2^k + 1 in ``above + 1 .. up_to``, ascending."""
    sizes = {n for k in range(2, up_to.bit_length() + 1) for n in (2**k - 1, 2**k, 2**k + 1)}
    return tuple(sorted(n for n in sizes if above < n <= up_to))


def _ladder_rung(draw: Any, rungs: int, context: tuple[int, ...] = ()) -> int | None:
    """Which of ``rungs`` rungs this draw climbs to (one choice), or None on most draws.

    A hash of the drawn number and ``context`` (the shape drawn so far)
    decides whether (about one draw in LADDER_ODDS, whatever numbers
    Hypothesis favours: it reuses a number across examples, rarely with the
    same shape) and which rung, evenly; the rung is at most the number
    itself, so that shrinking the number lowers the rung (0 leaves the ladder).
    """
    number = draw(_LADDER_NUMBERS)
    if not (rungs and number):
        return None
    climb, rung = divmod(mix(hash((number, *context)) & 0xFFFFFFFFFFFFFFFF), rungs)
    return min(rung, number - 1) if climb % LADDER_ODDS == 0 else None


@_readable
def sides(*, min_side: int = 1, max_side: int = 8, max_ladder_side: int = 4096) -> st.SearchStrategy[int]:
    """Sizes ``min_side..max_side`` mostly; one draw in ``LADDER_ODDS`` a ladder size
    above ``max_side`` (``ladder_sizes``), up to ``max_ladder_side`` (0: never).

    For sizes that come from constructor arguments (a layer's feature count):
    small ones keep examples fast, ladder ones reach size-dependent code paths.
    Shrinks towards ``min_side``.
    """
    if not (1 <= min_side <= max_side):
        raise InvalidArgument(f"sides(min_side={min_side}, max_side={max_side}): need 1 <= min_side <= max_side.")
    ordinary = integers(min_side, max_side)
    ladder = ladder_sizes(max_side, max_ladder_side)
    if not ladder:
        return ordinary

    @st.composite
    def draw_side(draw: Any) -> int:
        # The ordinary side is drawn either way: a ladder draw that skipped it would be
        # the shorter choice sequence, which Hypothesis shrinks to (a ladder size).
        side = draw(ordinary)
        rung = _ladder_rung(draw, len(ladder))
        return side if rung is None else ladder[rung]

    return draw_side()


@_readable
def shapes(
    *,
    min_dims: int = 0,
    max_dims: int = 4,
    min_side: int = 1,
    max_side: int = 4,
    event_shape: Sequence[int] = (),
    allow_empty: bool = True,
    max_ladder_side: int = 4096,
    max_elements: int = 2**20,
) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes of ``min_dims..max_dims`` leading dimensions followed by ``event_shape``.

    Sides are ``min_side..max_side``; with ``allow_empty``, about one shape in
    eight with leading dimensions has its first one of size zero (an empty
    tensor).  Drawing zero as just another side would make most
    three- and four-dimensional shapes empty.  One shape in ``LADDER_ODDS``
    with leading dimensions climbs the size ladder: its last leading side is
    a ladder size (``ladder_sizes``) up to ``max_ladder_side``, or the one that
    makes the element count a ladder size, within ``max_elements`` elements
    (``max_ladder_side=0`` turns the ladder off).  Shrinks towards fewer
    dimensions, small sides and non-empty shapes.
    """
    if check_range((min_dims, max_dims), what="(min_dims, max_dims)"):
        raise InvalidArgument(f"shapes(min_dims={min_dims}, max_dims={max_dims}): need 0 <= min_dims <= max_dims.")
    if check_range((min_side, max_side), what="(min_side, max_side)"):
        raise InvalidArgument(f"shapes(min_side={min_side}, max_side={max_side}): need 0 <= min_side <= max_side.")
    if not (max_ladder_side >= 0 and max_elements >= 1):
        raise InvalidArgument(
            f"shapes(max_ladder_side={max_ladder_side}, max_elements={max_elements}): "
            "need max_ladder_side >= 0 (0: no ladder) and max_elements >= 1."
        )
    event_shape = tuple(event_shape)
    batches = st.lists(integers(min_side, max_side), min_size=min_dims, max_size=max_dims)
    ladder = ladder_sizes(max_side, max_ladder_side)
    counts = ladder_sizes(max_side, max_elements)

    @st.composite
    def draw_shape(draw: Any) -> tuple[int, ...]:
        batch = draw(batches)
        if ladder and batch:
            rest = math.prod(batch[:-1]) * math.prod(event_shape)
            fits = _ladder_sides(ladder, counts, max(rest, 1), max_elements)
            rung = _ladder_rung(draw, len(fits), tuple(batch))
            if rung is not None:
                batch[-1] = fits[rung]
        if allow_empty and batch and draw(integers(0, 7)) == 7:
            batch[0] = 0
        return (*batch, *event_shape)

    return draw_shape()


@functools.lru_cache(maxsize=None)
def _ladder_sides(ladder: tuple[int, ...], counts: tuple[int, ...], rest: int, max_elements: int) -> tuple[int, ...]:
    """The ladder sides, and the sides up to the ladder's top giving a ladder element
    count (exactly, where ``rest`` divides it), that keep ``side * rest <= max_elements``;
    ascending."""
    by_count = {count // rest for count in counts if ladder[0] < count // rest <= ladder[-1]}
    return tuple(sorted(n for n in {*ladder, *by_count} if n * rest <= max_elements))


@functools.lru_cache(maxsize=None)
@_readable
def special_values(dtype: torch.dtype) -> st.SearchStrategy[float]:
    """Simple floats first (they shrink to small integers), then the dtype's edges:
    ±0, ±1, the largest finite, the smallest normal and the smallest subnormal."""
    return st.one_of(finite_floats(dtype), edges(dtype))


@_readable
def tensor_recipes(
    *,
    shape: Sequence[int],
    dtype: torch.dtype,
    device: str = "cpu",
    regimes: Sequence[str] = ALL_REGIMES,
    max_splices: int = 3,
    limit: float | str | None = None,
    sparse: bool = True,
) -> st.SearchStrategy[TensorRecipe]:
    """Recipes of tensors: seed, regime, scale and kept elements, then up to ``max_splices`` spliced elements.

    ``limit`` caps magnitudes (default: the dtype's largest finite number;
    ``"moderate"``: ``moderate_limit(dtype)``); ``sparse=False`` keeps every
    element of a random regime (no exact zeros but by chance).
    """
    domain = ValueDomain(tuple(regimes), max_splices, limit, sparse)  # validates now, not at draw time
    shape = tuple(shape)
    return st.composite(lambda draw: draw_recipe(draw, shape, dtype, device, domain))()


@_readable
def tensors(
    *,
    shape: Sequence[int] | st.SearchStrategy[tuple[int, ...]],
    dtype: torch.dtype | st.SearchStrategy[torch.dtype] = torch.float32,
    device: str | st.SearchStrategy[str] = "cpu",
    regimes: Sequence[str] = ALL_REGIMES,
    max_splices: int = 3,
) -> st.SearchStrategy[torch.Tensor]:
    """Finite tensors of the given (or drawn) shape, dtype and device."""
    domain = ValueDomain(tuple(regimes), max_splices)

    def drawn(draw: Any, value: Any) -> Any:
        # A fixed value costs nothing; only strategies are drawn from.
        return draw(value) if isinstance(value, st.SearchStrategy) else value

    @st.composite
    def draw_tensor(draw: Any) -> torch.Tensor:
        recipe = draw_recipe(draw, tuple(drawn(draw, shape)), drawn(draw, dtype), drawn(draw, device), domain)
        return recipe.materialize()

    return draw_tensor()


@st.composite
def layer_cases(
    draw: Any,
    spec: LayerSpec,
    *,
    pairs: Pairs | None = None,
    values: ValueDomain = ValueDomain(),
) -> LayerCase:
    """Examples for ``spec``: constructor arguments, dtype, device, input shape and values.

    ``pairs`` are the dtypes and devices to draw (``properties.selection.run_pairs``;
    by default every one the spec supports and this machine has); ``values``
    narrows the input values, and the spec's input domain (``batch_sides``,
    ``input_limit``, ``input_dtype``, ``input_range``) narrows both.
    """
    pairs = run_pairs(None, spec) if pairs is None else pairs
    if not (pairs.dtypes and pairs.devices):
        raise InvalidArgument(
            f"layer_cases({spec.name}): nothing to draw: the spec supports dtypes {spec.dtypes} and devices "
            f"{spec.devices}; the pairs give dtypes {pairs.dtypes} and devices {pairs.devices} (this machine has "
            f"{available_devices()})."
        )
    constructor_args = draw(spec.constructor_args_strategy())
    if pairs.only is None:
        dtype = draw(_dtypes_of(pairs.dtypes))
        device = draw(_devices_of(pairs.devices))
    else:
        dtype, device = draw(_pairs_of(pairs.only))
    recipe = draw(input_recipes(spec, constructor_args, dtype=dtype, device=device, values=values))
    module_seed = draw(integers(0, 2**31 - 2))
    return LayerCase(spec, constructor_args, recipe, module_seed, None if spec.input_dtype is None else dtype)


def input_recipes(
    spec: LayerSpec,
    constructor_args: Mapping[str, Any],
    *,
    dtype: torch.dtype,
    device: str,
    values: ValueDomain = ValueDomain(),
    shape: tuple[int, ...] | None = None,
) -> st.SearchStrategy[TensorRecipe | IndexRecipe]:
    """Main inputs of ``spec`` for these constructor arguments, inside its declared domain
    (``batch_sides``, ``input_limit``, ``input_dtype``/``input_range``): a shape (or the
    given one), then a float or an index recipe.  ``dtype`` is the layer's."""

    @st.composite
    def draw_input(draw: Any) -> TensorRecipe | IndexRecipe:
        drawn = shape
        if drawn is None:
            low, high = spec.batch_dims
            event_shape = spec.event_shape(constructor_args)
            if spec.batch_sides:
                sides = tuple(sorted(spec.batch_sides.items()))
                drawn = draw(_sided_shapes_of(low, high, spec.allows_empty, spec.max_side, sides, event_shape))
            else:
                drawn = draw(
                    _shapes_of(
                        low, high, spec.allows_empty, spec.max_side, event_shape, spec.max_ladder_side, spec.max_elements
                    )
                )
        if spec.input_dtype is None:
            return draw_recipe(draw, drawn, dtype, device, values, spec.input_limit)
        index_low, index_high = spec.index_range(constructor_args)
        return draw_index_recipe(draw, drawn, spec.input_dtype, device, index_low, index_high)

    return draw_input()


def _sided_shapes(
    low: int, high: int, allow_empty: bool, max_side: int, sides: tuple[tuple[int, tuple[int, int]], ...], event_shape: tuple[int, ...]
) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes whose batch dimensions have the sizes ``sides`` declares ({dim: (min, max)}),
    ``1..max_side`` elsewhere; an undeclared first dimension is empty as often as in ``shapes``."""
    declared = dict(sides)
    side_of = [integers(*declared.get(i, (1, max_side))) for i in range(high)]

    @st.composite
    def draw_shape(draw: Any) -> tuple[int, ...]:
        batch = [draw(side_of[i]) for i in range(draw(integers(low, high)))]
        if allow_empty and batch and 0 not in declared and draw(integers(0, 7)) == 7:
            batch[0] = 0
        return (*batch, *event_shape)

    return draw_shape()


# layer_cases runs once per example: build its strategies once per argument set.
_dtypes_of = functools.lru_cache(maxsize=None)(lambda allowed: dtypes(allowed=allowed))
_devices_of = functools.lru_cache(maxsize=None)(lambda allowed: devices(allowed=allowed))
_pairs_of = functools.lru_cache(maxsize=None)(st.sampled_from)
_shapes_of = functools.lru_cache(maxsize=None)(
    lambda low, high, allow_empty, max_side, event_shape, max_ladder_side, max_elements: shapes(
        min_dims=low,
        max_dims=high,
        allow_empty=allow_empty,
        max_side=max_side,
        event_shape=event_shape,
        max_ladder_side=max_ladder_side,
        max_elements=max_elements,
    )
)
_sided_shapes_of = functools.lru_cache(maxsize=None)(_sided_shapes)
