"""What a run selected, and the (dtype, device) pairs a property draws under it.

``Selection`` is a value (``--layers``, ``--properties``, ``--dtypes``,
``--devices``), passed explicitly to whatever runs or draws: no process-wide
state.  ``run_pairs`` is the one place that works out which dtypes and devices
a property draws for a spec: the spec's, the property's, the selection's, this
machine's, around the expected failures the spec declares.  The strategies
draw from its answer; they do not work it out again.

Free of torch at import (``available_devices`` imports it when asked), so
that the pytest plugin can hold a Selection without importing torch.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from properties.names import dtype_name

if TYPE_CHECKING:
    from properties.expected import ExpectedFailure
    from properties.registry import LayerProperty
    from properties.spec import LayerSpec

__all__ = ["EVERYTHING", "Pairs", "Selection", "available_devices", "run_pairs"]


def _names(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a run selected: layer and property names or globs, dtype and device names
    (``float32``, ``cuda``); None selects everything (``Selection.everything()``)."""

    layers: tuple[str, ...] | None = None
    properties: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # A value: lists given (from options, say) are kept as tuples.
        for field in ("layers", "properties", "dtypes", "devices"):
            object.__setattr__(self, field, _names(getattr(self, field)))

    @classmethod
    def everything(cls) -> Selection:
        return cls()

    @staticmethod
    def matches(name: str, patterns: Sequence[str] | None) -> bool:
        """Whether ``name`` is among ``patterns`` (globs; None: everything)."""
        return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


EVERYTHING = Selection.everything()


@functools.lru_cache(maxsize=None)
def available_devices() -> tuple[str, ...]:
    """``cpu``, plus ``cuda`` and ``mps`` where this machine has them."""
    import torch  # here: this module is imported where torch is not (the plugin)

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return tuple(found)


@dataclasses.dataclass(frozen=True)
class Pairs:
    """The (dtype, device) pairs a property draws for a spec in a run.

    ``dtypes`` and ``devices``: what may be drawn (the spec's order, this
    machine's order); ``only``: None where every dtype x device pair is drawn
    (a dtype, then a device: two choices), else the pairs drawn (one choice):
    those outside the expected failures the spec declares for the property, or
    those inside the one expected failure whose test this is.
    """

    dtypes: tuple[Any, ...]
    devices: tuple[str, ...]
    only: tuple[tuple[Any, str], ...] | None = None


def run_pairs(
    prop: LayerProperty | None,
    spec: LayerSpec,
    selection: Selection = EVERYTHING,
    expected: ExpectedFailure | None = None,
) -> Pairs:
    """What ``prop`` (None: any property) draws for ``spec`` under ``selection`` on this machine;
    with ``expected``, what that expected failure's test draws."""
    dtypes = tuple(
        d
        for d in spec.dtypes
        if (prop is None or prop.dtypes is None or d in prop.dtypes)
        and (selection.dtypes is None or dtype_name(d) in selection.dtypes)
    )
    devices = tuple(
        d for d in available_devices() if d in spec.devices and (selection.devices is None or d in selection.devices)
    )
    every = [(dtype, device) for dtype in dtypes for device in devices]
    if expected is not None:
        return Pairs(dtypes, devices, tuple(pair for pair in every if expected.covers(*pair)))
    declared = () if prop is None else spec.expected_failures_of(prop.name)
    if not declared:
        return Pairs(dtypes, devices)
    return Pairs(dtypes, devices, tuple(pair for pair in every if not any(e.covers(*pair) for e in declared)))
