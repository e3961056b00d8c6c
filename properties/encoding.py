"""The one-choice encoding: how a drawn tensor costs O(1) Hypothesis choices whatever its size.

One choice on most draws: a number whose last digit says whether every
element is kept or a single extreme one, and whose other digits are the seed;
the seed also picks the head: the value regime, its scale (or constant) and
how many elements are spliced in, each of which costs one more choice.  The
choices become a recipe (``properties.recipes``), which torch's own
generator, seeded with the drawn seed, materializes.  Shrinking moves towards
a single non-zero element, then small seeds: no splices, zeros, then constants.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import torch
from hypothesis import strategies as st

from properties.domains import ALL_REGIMES, ValueDomain
from properties.recipes import IndexRecipe, TensorRecipe, exponent_range, moderate_limit

__all__ = ["NUMBERS", "draw_index_recipe", "draw_recipe", "edges", "finite_floats", "integers", "mix"]


# Strategies are immutable: build each once, not on every draw (building and
# validating them costs more than drawing from them).
integers = functools.lru_cache(maxsize=None)(st.integers)


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
NUMBERS = integers(0, 2**32 - 1)


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
    low, high = exponent_range(dtype)

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


def draw_index_recipe(draw: Any, shape: tuple[int, ...], dtype: torch.dtype, device: str, low: int, high: int) -> IndexRecipe:
    """One choice, as for float tensors: a seed and a digit; digit 0 makes every element ``low``."""
    seed, digit = divmod(draw(NUMBERS), _KEEP_DIGITS)
    return IndexRecipe(shape, dtype, device, low, high, seed, digit == 0)


def draw_recipe(
    draw: Any, shape: tuple[int, ...], dtype: torch.dtype, device: str, domain: ValueDomain, input_limit: float | None = None
) -> TensorRecipe:
    """The choices behind a tensor: the number (seed, head and kept elements), then
    one value per spliced element.

    A constant number of choices whatever the tensor's size: one on most
    draws, at most ``1 + max_splices``.  ``input_limit`` (a spec's) caps
    magnitudes further than the domain does.
    """
    numel = math.prod(shape)
    seed, digit = divmod(draw(NUMBERS), _KEEP_DIGITS)
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
        values = [draw(finite_floats(dtype) if kind == "float" else edges(dtype)) for kind in head.splices]
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
        position = mix(state) % numel
        while position in positions and len(positions) < numel:
            position = (position + 1) % numel
        positions.append(position)
    return positions


def mix(state: int) -> int:
    """SplitMix64's output function: unrelated outputs for neighbouring inputs."""
    mixed = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return mixed ^ (mixed >> 31)


@functools.lru_cache(maxsize=None)
def edges(dtype: torch.dtype) -> st.SearchStrategy[float]:
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
def finite_floats(dtype: torch.dtype) -> st.SearchStrategy[float]:
    info = torch.finfo(dtype)
    width = {torch.float16: 16, torch.float64: 64}.get(dtype, 32)
    # bfloat16 has float32's range: drawn as float32, rounded on the way in (clamped there).
    return st.floats(min_value=-info.max, max_value=info.max, width=width, allow_nan=False)
