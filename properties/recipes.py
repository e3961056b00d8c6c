"""What a drawn tensor is made of (``TensorRecipe``, ``IndexRecipe``), and how it is made.

A recipe holds the few numbers Hypothesis drew for a tensor (its seed, value
regime, scale, kept elements and spliced values; see ``properties.encoding``);
``materialize()`` makes the tensor from them with torch's own generator,
seeded with the drawn seed.  Nothing here touches torch's global RNG state.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from properties.names import dtype_name

__all__ = ["IndexRecipe", "TensorRecipe", "exponent_range", "moderate_limit"]


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
                low, high = exponent_range(self.dtype)
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
        dtype = dtype_name(self.dtype)
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
        dtype = dtype_name(self.dtype)
        text = f"indices(shape={self.shape}, {dtype}, {self.device}, range=[{self.low}, {self.high}), "
        text += "all low" if self.all_low else f"seed={self.seed}"
        if 0 < math.prod(self.shape) <= 16:
            text += f", values={self.materialize().cpu().flatten().tolist()}"
        return text + ")"


_shared_generator: torch.Generator | None = None


def _generator(seed: int) -> torch.Generator:
    # Re-seeding one generator costs ~1 µs; a new Generator object costs more.
    global _shared_generator
    if _shared_generator is None:
        _shared_generator = torch.Generator()
    return _shared_generator.manual_seed(seed)


def exponent_range(dtype: torch.dtype) -> tuple[int, int]:
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
