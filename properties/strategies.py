"""Hypothesis strategies for dtypes, devices, shapes, tensors and layer examples.

Tensors cost O(1) Hypothesis choices whatever their size, one on most
draws: a number whose last digit says whether every element is kept or a
single extreme one, and whose other digits are the seed; the seed also picks
the head: the value regime, its scale (or constant) and how many elements
are spliced in, each of which costs one more choice.  torch's own generator,
seeded with the drawn seed, materializes the values.  Shrinking moves towards
small shapes, then a single non-zero element, then small seeds: no splices,
zeros, then constants.  Nothing here touches torch's global RNG state except
inside ``seeded()``, which restores it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from properties.cases import LayerCase, seeded
from properties.domains import ALL_REGIMES, ValueDomain
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


# Strategies are immutable: build each once, not on every draw (building and
# validating them costs more than drawing from them).
_integers = functools.lru_cache(maxsize=None)(st.integers)


# A tensor costs one choice on most draws (each choice costs some 5-10% of
# Hypothesis' per-example overhead, and a choice that repeats often makes
# whole examples repeat, which costs more): a number whose last digit (base
# 16) says which elements are kept and whose other digits are the seed.  The seed's residue
# modulo the table of heads picks the head: the value regime, its power-of-two
# scale and the spliced elements (how many, and of which kind).  Shrinking
# lowers the number: its last digit first, which keeps the seed, so the same
# values lose all but one element; then the seed, towards small heads.  The
# table is ordered as shrinking should simplify: the splice slots are the
# major index (the first ones have no splice), then the regimes, simplest
# first: zeros, constants, ordinary values.  Hypothesis draws small numbers
# (and the constants it finds in the source) often: about one tensor in seven
# has seed 0, all zeros.
_SCALE_STEPS = {"ordinary": (0, -3, 3), "tiny": (0, 4, 8), "huge": (0, 4, 8)}
# The keep digit (base 16): 0, 1 and 2 keep a single element, the most extreme in
# one of three orders (about one random tensor in six, as Hypothesis favours
# small numbers), the rest keep every element.  The extreme element survives
# so that a failure caused by an outlier shrinks to the outlier alone; the three
# orders let the shrinker keep the element that matters: the largest
# magnitude, the largest value or the smallest value.
_KEEP_ORDERS = ("magnitude", "largest", "smallest")
_KEEP_DIGITS = 16
# The number: a 28-bit seed, then the keep digit.
_NUMBERS = _integers(0, 2**32 - 1)


@dataclasses.dataclass(frozen=True)
class _Head:
    regime: str
    scale: float  # the regime's scale in this dtype (a constant's value comes from the seed)
    splices: tuple[str, ...]  # the kind of each spliced element: "float" or "edge"


@functools.lru_cache(maxsize=None)
def _heads(regimes: tuple[str, ...], max_splices: int, dtype: torch.dtype) -> tuple[_Head, ...]:
    """The table of heads.

    One spliced element comes in two slots (an arbitrary float, or one of the
    dtype's edges), larger counts in one slot each (the kinds alternate): one
    head in eight has splices, and about one tensor in sixteen, since small
    numbers are drawn more often.  Each spliced element costs a choice.
    """
    low, high = _exponent_range(dtype)

    def scale(regime: str, step: int) -> float:
        if regime == "ordinary":
            return 2.0**step  # around 1
        if regime == "tiny":
            return 2.0 ** (low + step)  # up from the smallest normal
        if regime == "huge":
            return 2.0 ** (high - step)  # down from the top
        # mixed: each element gets its own power of two, drawn by the generator;
        # zeros: none; a constant's value comes from the seed.
        return 1.0 if regime == "mixed" else 0.0

    ordered = sorted(regimes, key=ALL_REGIMES.index)
    every = [(regime, step) for regime in ordered for step in _SCALE_STEPS.get(regime, (0,))]
    # Zeros and constants (one head each) in the first slot and with splices;
    # the other slots without splices repeat only the random regimes, or
    # small seeds would give all-equal tensors too often.
    random_ = [(regime, step) for regime, step in every if regime not in ("zeros", "constant")] or every
    spliced = [("float",), ("edge",)] if max_splices else []
    spliced += [tuple(("float", "edge")[i % 2] for i in range(count)) for count in range(2, max_splices + 1)]
    slots = [((), every)] + [((), random_)] * (7 * len(spliced) - 1) + [(kinds, every) for kinds in spliced]
    return tuple(_Head(regime, scale(regime, step), kinds) for kinds, heads in slots for regime, step in heads)


def dtypes(*, allowed: Sequence[torch.dtype] = FLOAT_DTYPES) -> st.SearchStrategy[torch.dtype]:
    """Floating dtypes, shrinking towards the first of ``allowed`` (float32 by default)."""
    allowed = tuple(allowed)
    unknown = [d for d in allowed if d not in FLOAT_DTYPES]
    if not allowed or unknown:
        raise InvalidArgument(f"dtypes(allowed={allowed!r}): choose one or more of {FLOAT_DTYPES}.")
    return st.sampled_from(allowed)


@functools.lru_cache(maxsize=None)
def available_devices() -> tuple[str, ...]:
    """``cpu``, plus ``cuda`` and ``mps`` where this machine has them."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return tuple(found)


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
_LADDER_NUMBERS = _integers(0, 2**24 - 1)


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
    climb, rung = divmod(_mix(hash((number, *context)) & 0xFFFFFFFFFFFFFFFF), rungs)
    return min(rung, number - 1) if climb % LADDER_ODDS == 0 else None


def sides(*, min_side: int = 1, max_side: int = 8, max_ladder_side: int = 4096) -> st.SearchStrategy[int]:
    """Sizes ``min_side..max_side`` mostly; one draw in ``LADDER_ODDS`` a ladder size
    above ``max_side`` (``ladder_sizes``), up to ``max_ladder_side`` (0: never).

    For sizes that come from constructor arguments (a layer's feature count):
    small ones keep examples fast, ladder ones reach size-dependent code paths.
    Shrinks towards ``min_side``.
    """
    if not (1 <= min_side <= max_side):
        raise InvalidArgument(f"sides(min_side={min_side}, max_side={max_side}): need 1 <= min_side <= max_side.")
    ordinary = _integers(min_side, max_side)
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
    if not (0 <= min_dims <= max_dims):
        raise InvalidArgument(f"shapes(min_dims={min_dims}, max_dims={max_dims}): need 0 <= min_dims <= max_dims.")
    if not (0 <= min_side <= max_side):
        raise InvalidArgument(f"shapes(min_side={min_side}, max_side={max_side}): need 0 <= min_side <= max_side.")
    if not (max_ladder_side >= 0 and max_elements >= 1):
        raise InvalidArgument(
            f"shapes(max_ladder_side={max_ladder_side}, max_elements={max_elements}): "
            "need max_ladder_side >= 0 (0: no ladder) and max_elements >= 1."
        )
    event_shape = tuple(event_shape)
    batches = st.lists(_integers(min_side, max_side), min_size=min_dims, max_size=max_dims)
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
        if allow_empty and batch and draw(_integers(0, 7)) == 7:
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
def special_values(dtype: torch.dtype) -> st.SearchStrategy[float]:
    """Simple floats first (they shrink to small integers), then the dtype's edges:
    ±0, ±1, the largest finite, the smallest normal and the smallest subnormal."""
    return st.one_of(_finite_floats(dtype), _edges(dtype))


@functools.lru_cache(maxsize=None)
def _edges(dtype: torch.dtype) -> st.SearchStrategy[float]:
    return st.sampled_from(_edge_values(dtype))


@functools.lru_cache(maxsize=None)
def _edge_values(dtype: torch.dtype) -> tuple[float, ...]:
    info = torch.finfo(dtype)
    return (0.0, -0.0, 1.0, -1.0, info.max, -info.max, info.tiny, -info.tiny, info.smallest_normal * info.eps)


@functools.lru_cache(maxsize=None)
def _constant_values(dtype: torch.dtype) -> tuple[float, ...]:
    """The constant regime's values, simplest first: small numbers, inexact
    fractions (their sums round), the square root of the range, then the edges.

    Taken from the seed rather than drawn: a drawn float would cost a choice,
    and the constant head comes with the seeds Hypothesis draws most often, so
    drawn floats (themselves mostly simple) would repeat whole examples.
    """
    return (1.0, -1.0, 2.0, 0.5, -3.0, 10.0, 0.1, -1 / 3, 1000.0, 1e-3, moderate_limit(dtype), *_edge_values(dtype)[4:])


@functools.lru_cache(maxsize=None)
def _finite_floats(dtype: torch.dtype) -> st.SearchStrategy[float]:
    info = torch.finfo(dtype)
    width = {torch.float16: 16, torch.float64: 64}.get(dtype, 32)
    # bfloat16 has float32's range: drawn as float32, rounded on the way in (clamped there).
    return st.floats(min_value=-info.max, max_value=info.max, width=width, allow_nan=False)


@dataclasses.dataclass(frozen=True)
class TensorRecipe:
    """What a drawn tensor is made of; ``materialize()`` makes it."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    device: str
    regime: str
    scale: float  # the constant for "constant", the power of two for the others
    seed: int
    keep: str | None  # None: every element; else only the most extreme: "magnitude", "largest" or "smallest"
    splices: tuple[tuple[int, float], ...]
    limit: float  # largest magnitude: the dtype's largest finite number unless capped

    def materialize(self) -> torch.Tensor:
        # A few microseconds per torch call add up to a few percent of
        # Hypothesis' per-example cost: calls that would change nothing are skipped.
        work = torch.float64 if self.dtype == torch.float64 else torch.float32
        if self.regime in ("zeros", "constant"):
            values = torch.full(self.shape, self.scale, dtype=work)
        else:
            generator = _generator(self.seed)
            # One call: normal() scales as it draws (randn then mul_ costs twice).
            values = torch.normal(0.0, self.scale, self.shape, generator=generator, dtype=work)
            if self.regime == "mixed":  # each element's own power of two, uniform over the binades
                low, high = _exponent_range(self.dtype)
                values = torch.ldexp(values, torch.randint(low, high + 1, self.shape, generator=generator))
        if self.keep is not None and self.regime == "constant":
            values.view(-1)[1:] = 0.0  # equal values: the first survives
        elif self.keep == "magnitude":
            # The extreme element survives (exact ties would keep a few): a
            # failure caused by an outlier then shrinks to the outlier alone.
            magnitudes = values.abs()
            values.masked_fill_(magnitudes < magnitudes.max(), 0.0)
        elif self.keep == "largest":
            values.masked_fill_(values < values.max(), 0.0)
        elif self.keep == "smallest":
            values.masked_fill_(values > values.min(), 0.0)
        if self.splices:
            flat = values.view(-1)
            for position, value in self.splices:
                flat[position] = value
        # Uncapped values stay finite without clamping: the largest scale is
        # 2**(e - 3), e the exponent of the dtype's top binade, so any sample
        # below 16 in magnitude times it is finite, and a normal sample stays
        # far below 16 (torch's Box-Muller transform gives at most about 8.6; a
        # Gaussian tail beyond 16 has probability ~1e-57); constants and spliced
        # values are the dtype's own numbers.  A capped recipe clamps.
        if self.limit < torch.finfo(self.dtype).max:
            values.clamp_(-self.limit, self.limit)
        if work != self.dtype:
            values = values.to(self.dtype)
        return values if self.device == "cpu" else values.to(self.device)

    def further(self, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """Another tensor of ``shape`` in this one's regime, scale and cap (``LayerSpec.inputs``' ``make``)."""
        return dataclasses.replace(self, shape=shape, seed=seed, keep=None, splices=()).materialize()

    def typical(self, shape: tuple[int, ...]) -> TensorRecipe:
        """Ordinary values of ``shape`` from the same seed and cap: an input any layer must take."""
        return dataclasses.replace(self, shape=shape, regime="ordinary", scale=1.0, keep=None, splices=())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # Hypothesis' "Falsifying example" uses this

    def __repr__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        regime = {"zeros": "zeros", "constant": f"constant {self.scale!r}"}.get(
            self.regime, f"{self.regime} x{self.scale:.3g}"
        )
        text = f"tensor(shape={self.shape}, {dtype}, {self.device}, regime={regime}, seed={self.seed}"
        if self.keep is not None:
            text += f", keep=most {self.keep}"
        if self.splices:
            text += f", splices={list(self.splices)}"
        if 0 < math.prod(self.shape) <= 16:
            text += f", values={self.materialize().cpu().flatten().tolist()}"
        return text + ")"


@dataclasses.dataclass(frozen=True)
class IndexRecipe:
    """A drawn integer or bool tensor (indices, masks): uniform in ``[low, high)`` from the
    seed, or all ``low`` (the simplest input, where shrinking goes)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    device: str
    low: int
    high: int
    seed: int
    all_low: bool

    def materialize(self) -> torch.Tensor:
        if self.all_low:
            values = torch.full(self.shape, self.low, dtype=torch.int64)
        else:
            values = torch.randint(self.low, self.high, self.shape, generator=_generator(self.seed))
        values = values.bool() if self.dtype == torch.bool else values.to(self.dtype)
        return values if self.device == "cpu" else values.to(self.device)

    def further(self, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """A float tensor of ``shape`` with ordinary values (``LayerSpec.inputs``' ``make``)."""
        return torch.normal(0.0, 1.0, shape, generator=_generator(seed))

    def typical(self, shape: tuple[int, ...]) -> IndexRecipe:
        return dataclasses.replace(self, shape=shape, all_low=False)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        text = f"indices(shape={self.shape}, {dtype}, {self.device}, range=[{self.low}, {self.high}), "
        text += "all low" if self.all_low else f"seed={self.seed}"
        if 0 < math.prod(self.shape) <= 16:
            text += f", values={self.materialize().cpu().flatten().tolist()}"
        return text + ")"


def _draw_index_recipe(draw: Any, shape: tuple[int, ...], dtype: torch.dtype, device: str, low: int, high: int) -> IndexRecipe:
    """One choice, as for float tensors: a seed and a digit; digit 0 makes every element ``low``."""
    seed, digit = divmod(draw(_NUMBERS), _KEEP_DIGITS)
    return IndexRecipe(shape, dtype, device, low, high, seed, digit == 0)


_shared_generator: torch.Generator | None = None


def _generator(seed: int) -> torch.Generator:
    # Re-seeding one generator costs ~1 µs; a new Generator object costs more.
    global _shared_generator
    if _shared_generator is None:
        _shared_generator = torch.Generator()
    return _shared_generator.manual_seed(seed)


def _exponent_range(dtype: torch.dtype) -> tuple[int, int]:
    """Powers of two from the smallest normal to 1/8 of the largest finite.

    The top three binades are left out so that a normal sample (|z| < 8 in
    practice, clamped beyond) times the scale stays finite.
    """
    info = torch.finfo(dtype)
    # frexp, not log2: log2 of float32's largest finite rounds up to 128, a binade too high.
    return math.frexp(info.tiny)[1] - 1, math.frexp(info.max)[1] - 1 - 3


def moderate_limit(dtype: torch.dtype) -> float:
    """About the square root of the dtype's range: 128 for float16, 2**63 for float32.

    Squares, and sums of a few thousand products, of such values stay finite.
    The exponent is read with frexp: math.log2 of float64's and float32's
    largest finite rounds up to 1024 and 128, whose halves square to inf.
    """
    return 2.0 ** ((math.frexp(torch.finfo(dtype).max)[1] - 1) // 2)


def _draw_recipe(
    draw: Any, shape: tuple[int, ...], dtype: torch.dtype, device: str, domain: ValueDomain, input_limit: float | None = None
) -> TensorRecipe:
    """The choices behind a tensor: the number (seed, head and kept elements), then
    one value per spliced element.

    A constant number of choices whatever the tensor's size: one on most
    draws, at most ``1 + max_splices``.  ``input_limit`` (a spec's) caps
    magnitudes further than the domain does.
    """
    numel = math.prod(shape)
    seed, digit = divmod(draw(_NUMBERS), _KEEP_DIGITS)
    table = _heads(domain.regimes, domain.max_splices, dtype)
    head = table[seed % len(table)]
    regime, scale, keep = head.regime, head.scale, None
    if regime == "constant":
        constants = _constant_values(dtype)
        scale = constants[seed // len(table) % len(constants)]
    if regime != "zeros" and numel > 1 and domain.sparse and digit < len(_KEEP_ORDERS):
        keep = _KEEP_ORDERS[digit]
    splices: tuple[tuple[int, float], ...] = ()
    if numel and head.splices:
        values = [draw(_finite_floats(dtype) if kind == "float" else _edges(dtype)) for kind in head.splices]
        splices = tuple(zip(_splice_positions(seed, len(values), numel), values))
    limit = _limit(dtype, domain.limit)
    if input_limit is not None and input_limit < limit:
        limit = float(input_limit)
        # A constant or spliced value beyond the cap is clamped at materialization.
    return TensorRecipe(shape, dtype, device, regime, scale, seed, keep, splices, limit)


@functools.lru_cache(maxsize=None)
def _limit(dtype: torch.dtype, cap: float | str | None) -> float:
    """The largest magnitude of a tensor: the dtype's largest finite number, or the domain's cap."""
    limit = torch.finfo(dtype).max
    return limit if cap is None else min(limit, moderate_limit(dtype) if cap == "moderate" else cap)


def _splice_positions(seed: int, count: int, numel: int) -> list[int]:
    """``count`` distinct positions below ``numel`` (as far as there are), derived from ``seed``.

    Derived rather than drawn: a drawn position would cost a choice per splice.
    SplitMix64 steps, so that neighbouring seeds give unrelated positions.
    """
    positions: list[int] = []
    state = seed
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        position = _mix(state) % numel
        while position in positions and len(positions) < numel:
            position = (position + 1) % numel
        positions.append(position)
    return positions


def _mix(state: int) -> int:
    """SplitMix64's output function: unrelated outputs for neighbouring inputs."""
    mixed = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return mixed ^ (mixed >> 31)


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
    return st.composite(lambda draw: _draw_recipe(draw, shape, dtype, device, domain))()


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
        recipe = _draw_recipe(draw, tuple(drawn(draw, shape)), drawn(draw, dtype), drawn(draw, device), domain)
        return recipe.materialize()

    return draw_tensor()


@st.composite
def layer_cases(
    draw: Any,
    spec: LayerSpec,
    *,
    only_dtypes: Sequence[torch.dtype] | None = None,
    only_devices: Sequence[str] | None = None,
    values: ValueDomain = ValueDomain(),
    pairs: Sequence[tuple[torch.dtype, str]] | None = None,
) -> LayerCase:
    """Examples for ``spec``: constructor arguments, dtype, device, input shape and values.

    ``only_dtypes``/``only_devices`` narrow what the spec supports (the
    result must not be empty); ``values`` narrows the input values, and the
    spec's input domain (``batch_sides``, ``input_limit``, ``input_dtype``,
    ``input_range``) narrows both.  ``pairs``, where given, are the
    (dtype, device) pairs to draw from instead (around expected failures).
    """
    allowed_dtypes = [d for d in spec.dtypes if only_dtypes is None or d in only_dtypes]
    if not allowed_dtypes:
        raise InvalidArgument(
            f"layer_cases({spec.name}): the spec supports dtypes {spec.dtypes}, none of {tuple(only_dtypes or ())}."
        )
    allowed_devices = tuple(d for d in spec.devices if only_devices is None or d in only_devices)
    constructor_args = draw(spec.constructor_args_strategy())
    if pairs is None:
        dtype = draw(_dtypes_of(tuple(allowed_dtypes)))
        device = draw(_devices_of(allowed_devices))
    else:
        dtype, device = draw(_pairs_of(tuple(pairs)))
    recipe = draw(input_recipes(spec, constructor_args, dtype=dtype, device=device, values=values))
    module_seed = draw(_integers(0, 2**31 - 2))
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
            return _draw_recipe(draw, drawn, dtype, device, values, spec.input_limit)
        index_low, index_high = spec.index_range(constructor_args)
        return _draw_index_recipe(draw, drawn, spec.input_dtype, device, index_low, index_high)

    return draw_input()


def _sided_shapes(
    low: int, high: int, allow_empty: bool, max_side: int, sides: tuple[tuple[int, tuple[int, int]], ...], event_shape: tuple[int, ...]
) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes whose batch dimensions have the sizes ``sides`` declares ({dim: (min, max)}),
    ``1..max_side`` elsewhere; an undeclared first dimension is empty as often as in ``shapes``."""
    declared = dict(sides)
    side_of = [_integers(*declared.get(i, (1, max_side))) for i in range(high)]

    @st.composite
    def draw_shape(draw: Any) -> tuple[int, ...]:
        batch = [draw(side_of[i]) for i in range(draw(_integers(low, high)))]
        if allow_empty and batch and 0 not in declared and draw(_integers(0, 7)) == 7:
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
