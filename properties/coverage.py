"""The input space a gate test's examples drew: one example's, merged, in reading order.

Free of torch and pytest: the runner records it per example, the report
(``properties.report``) merges what xdist workers send and shows it.
"""

from __future__ import annotations

from typing import Any

from properties.names import DEVICE_NAMES, DTYPE_NAMES, REGIMES

__all__ = ["coverage_of", "describe_coverage", "merge_coverage", "sorted_coverage"]


def coverage_of(shape: tuple[int, ...], dtype: str, device: str, regime: str) -> dict[str, Any]:
    """The input space of one drawn example, in a form that merges (``merge_coverage``)
    and that xdist can carry in ``user_properties`` (plain lists and numbers)."""
    elements = 1
    for side in shape:
        elements *= side
    return {
        "examples": 1,
        "ranks": [len(shape)],
        "largest_side": max(shape, default=0),
        "largest_elements": elements,
        "dtypes": [dtype],
        "devices": [device],
        "regimes": [regime],
    }


def merge_coverage(into: dict[str, Any] | None, more: dict[str, Any]) -> dict[str, Any]:
    """The input space of both: example counts add, extremes take the larger, sets unite."""
    if into is None:
        return {k: list(v) if isinstance(v, list) else v for k, v in more.items()}
    into["examples"] += more["examples"]
    for key in ("largest_side", "largest_elements"):
        into[key] = max(into[key], more[key])
    for key in ("ranks", "dtypes", "devices", "regimes"):
        into[key] = into[key] + [v for v in more[key] if v not in into[key]]
    return into


# Orders in which coverage lists read best (unknown values go last).
_ORDER = {"dtypes": DTYPE_NAMES, "devices": DEVICE_NAMES, "regimes": REGIMES}


def sorted_coverage(coverage: dict[str, Any]) -> dict[str, Any]:
    """``coverage`` with its lists in reading order: ranks ascending, the others as ``_ORDER``."""
    listed = {
        key: sorted(coverage[key], key=lambda v, key=key: (_ORDER[key].index(v) if v in _ORDER[key] else 99, v))
        for key in _ORDER
    }
    return {**coverage, "ranks": sorted(coverage["ranks"]), **listed}


def describe_coverage(coverage: dict[str, Any]) -> str:
    """One line: what the examples of a layer drew."""
    listed = sorted_coverage(coverage)
    ranks = listed["ranks"]
    return (
        f"{coverage['examples']} examples; ranks {ranks[0]}-{ranks[-1]}; largest side {coverage['largest_side']}; "
        f"largest input {coverage['largest_elements']} elements; dtypes {', '.join(listed['dtypes'])}; "
        f"devices {', '.join(listed['devices'])}; regimes {', '.join(listed['regimes'])}"
    )
