"""The check: a computed tensor against a reference's exact value and error bound."""

from __future__ import annotations

import math

import torch

from properties import claims
from properties.names import dtype_name
from properties.tolerances.rounding import SLACK, Bounded, note


class ToleranceExceeded(AssertionError):
    """A computed tensor is further from the exact result than its error bound allows."""


def assert_within_bound(actual: torch.Tensor, expected: Bounded, *, what: str = "output") -> None:
    """Fail unless ``actual`` is within ``SLACK * expected.error`` of the exact value.

    Checked where ``expected.representable`` and the bound is finite: there
    ``actual`` must also be finite.  Where the exact value is NaN (the mean
    of an empty tensor), ``actual`` must be NaN too.  Elements with an
    infinite bound are no claim, recorded as a Hypothesis event.
    """
    __tracebackhide__ = True
    if tuple(actual.shape) != tuple(expected.value.shape):
        raise ToleranceExceeded(
            f"{what} has shape {tuple(actual.shape)}, the reference {tuple(expected.value.shape)}"
        )
    got = actual.detach().to(device="cpu", dtype=torch.float64)
    want = expected.value
    bound = SLACK * torch.nan_to_num(expected.error, nan=math.inf)
    unbounded = expected.representable & ~bound.isfinite()
    if bool(unbounded.any()):
        note(f"bound: infinite for some elements in {dtype_name(expected.dtype)} (no claim there)")
    # A NaN the exact computation owes (the mean of an empty tensor) must be
    # matched; a NaN from overflow sits where no claim is made anyway.
    nan_expected = want.isnan() & expected.representable & ~unbounded
    checked = expected.representable & ~want.isnan() & ~unbounded
    excess = torch.where(checked, (got - want).abs() - bound, torch.zeros_like(got))
    # NaN - x is NaN: count a non-finite result where a finite one is owed as a failure.
    excess = torch.where(checked & ~got.isfinite(), math.inf, excess)
    excess = torch.where(nan_expected & ~got.isnan(), math.inf, excess)
    if got.numel():
        claims.compared(
            int((checked | nan_expected).sum()),
            vacant_because=f"{what}: every element beyond the range or the bound of {dtype_name(expected.dtype)}",
        )
    bad = excess > 0
    if not bad.any():
        return
    worst = int(excess.flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), got.shape)) if got.dim() else ()
    raise ToleranceExceeded(
        f"{what}: {int(bad.sum())} / {got.numel()} elements outside the error bound "
        f"(dtype {expected.dtype}, slack {SLACK}). Worst at index {index}: "
        f"computed {got[index].item()!r}, exact {want[index].item()!r}, "
        f"|difference| {(got[index] - want[index]).abs().item():.3g} > bound {bound[index].item():.3g}"
    )
