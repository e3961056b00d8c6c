"""Whether a property made its claim on an example: green means checked.

A property that returns without checking anything (an empty input, a law whose
transformed input overflowed, a pre-activation on relu's kink) calls
``no_claim(reason)``; a comparison whose every element lies beyond the bound's
claim (``assert_within_bound`` on overflowed values) counts as none unless
another comparison of the same example claimed something.  The runner opens a
ledger per example and counts, per property x layer, the examples drawn and
those with a claim: a cell without one is reported as ``no claim``, never as a
pass.  Outside a ledger (a property called directly) nothing is recorded.
This module imports neither torch nor the rest of the framework.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

__all__ = ["Ledger", "compared", "example_ledger", "no_claim"]


@dataclasses.dataclass
class Ledger:
    """What one example's check claimed."""

    withdrawn: str | None = None  # the reason given to no_claim
    claimed: bool = False  # a comparison checked at least one element
    vacant: str | None = None  # a comparison that checked no element, and why

    @property
    def no_claim_reason(self) -> str | None:
        """Why this example made no claim, or None where it made one."""
        if self.withdrawn is not None:
            return self.withdrawn
        return None if self.claimed else self.vacant


_current: Ledger | None = None


@contextlib.contextmanager
def example_ledger() -> Iterator[Ledger]:
    """Record what the check run inside claims (the runner wraps each example in one)."""
    global _current
    outer, _current = _current, Ledger()
    try:
        yield _current
    finally:
        _current = outer


def no_claim(reason: str) -> None:
    """The property checks nothing on this example, because ``reason``.

    Also a Hypothesis event (``no claim: <reason>``), so ``--hypothesis-show-statistics``
    counts it.  Call it right before returning early.
    """
    if _current is None:
        return
    _current.withdrawn = reason
    from hypothesis import currently_in_test_context, event  # lazy: Hypothesis is loaded by any test

    if currently_in_test_context():
        event(f"no claim: {reason}")


def compared(elements: int, *, vacant_because: str) -> None:
    """A comparison checked ``elements`` elements (0: none of them was claimable, because ``vacant_because``)."""
    if _current is None:
        return
    if elements:
        _current.claimed = True
    elif _current.vacant is None:
        _current.vacant = vacant_because
