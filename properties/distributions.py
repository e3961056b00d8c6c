"""Distributions a spec declares its parameters are initialized from.

Continuous ones have a ``cdf`` (for the Kolmogorov-Smirnov test of the
``initialization`` property); degenerate ones (a constant, the identity) have
``expected(shape) -> Tensor`` instead and are checked exactly, element by
element: a KS test against a point mass says nothing useful.  Each has a
readable ``repr``.  Add one by writing another small class with either method.
"""

from __future__ import annotations

import dataclasses
import math

import torch

__all__ = ["Constant", "Eye", "IfPresent", "Normal", "Uniform", "if_present", "ones", "standard_normal", "zeros"]


@dataclasses.dataclass(frozen=True)
class Normal:
    mean: float = 0.0
    std: float = 1.0

    def cdf(self, values: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + torch.erf((values - self.mean) / (self.std * math.sqrt(2))))


@dataclasses.dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def cdf(self, values: torch.Tensor) -> torch.Tensor:
        return ((values - self.low) / (self.high - self.low)).clamp(0, 1)


def standard_normal() -> Normal:
    """What ``torch.randn`` draws from (the lesson's ``MyLinear``)."""
    return Normal(0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Constant:
    """Every element equals ``value`` (``ones()``, ``zeros()``: norm layers' weight and bias)."""

    value: float

    def expected(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.full(shape, float(self.value), dtype=torch.float64)


@dataclasses.dataclass(frozen=True)
class Eye:
    """The identity matrix (``nn.init.eye_``): ones on the main diagonal of a 2-D tensor, zeros elsewhere."""

    def expected(self, shape: tuple[int, ...]) -> torch.Tensor:
        if len(shape) != 2:
            raise ValueError(f"Eye() describes a 2-D tensor, not one of shape {shape}")
        return torch.eye(*shape, dtype=torch.float64)


def ones() -> Constant:
    return Constant(1.0)


def zeros() -> Constant:
    return Constant(0.0)


@dataclasses.dataclass(frozen=True)
class IfPresent:
    """``distribution``, for a parameter the layer may lack: checked where the layer has
    it (a norm's weight when the constructor has no ``elementwise_affine`` option),
    where a plain declaration would call a missing parameter a spec error."""

    distribution: object

    def __repr__(self) -> str:
        return f"if_present({self.distribution!r})"


def if_present(distribution: object) -> IfPresent:
    return IfPresent(distribution)
