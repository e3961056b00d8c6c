"""Which input values a property's examples draw: the value regimes and their caps.

Its own module, free of torch, so that the registry (which the pytest plugin
loads in every project) can validate a property's ``ValueDomain`` when it is
declared, and the strategies can draw from it, without either importing the other.
"""

from __future__ import annotations

import dataclasses

from hypothesis.errors import InvalidArgument

from properties.names import REGIMES

__all__ = ["ALL_REGIMES", "ValueDomain"]

# The value regimes of ``properties.strategies.tensors`` (their names live in properties.names).
ALL_REGIMES = REGIMES


@dataclasses.dataclass(frozen=True)
class ValueDomain:
    """Which input values a property's examples draw (all of them by default).

    ``regimes``: value regimes; ``max_splices``: explicitly drawn elements
    spliced in (special values); ``limit``: a cap on magnitudes, a number or
    ``"moderate"`` (about the square root of the dtype's range, see
    ``properties.strategies.moderate_limit``); ``sparse``: whether tensors
    other than zeros may keep a single element (the rest exact zeros).
    """

    regimes: tuple[str, ...] = ALL_REGIMES
    max_splices: int = 3
    limit: float | str | None = None
    sparse: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.regimes) - set(ALL_REGIMES))
        if not self.regimes or unknown:
            raise InvalidArgument(f"ValueDomain(regimes={self.regimes!r}): choose from {ALL_REGIMES}.")
        if not (self.limit is None or self.limit == "moderate" or (isinstance(self.limit, (int, float)) and self.limit > 0)):
            raise InvalidArgument(f"ValueDomain(limit={self.limit!r}): a positive number, 'moderate' or None.")
        if not (isinstance(self.max_splices, int) and 0 <= self.max_splices <= 32):
            raise InvalidArgument(f"ValueDomain(max_splices={self.max_splices!r}): a whole number from 0 to 32.")
