"""Algebra: the algebraic facts a spec declares (centering, a non-negative output, an exact relu)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from properties import tolerances
from properties.authoring import comparable, forward, reference
from properties.cases import LayerCase
from properties.claims import no_claim
from properties.registry import layer_property
from properties.spec import spec_call


@layer_property(requires=("centering", "reference"))
def zero_mean_after_centering(case: LayerCase) -> None:
    """The mean of the output over all elements is zero, within the output's error bound."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    out = forward(case, module, x)
    expected = reference(case, module, x)
    if out.numel() == 0:
        no_claim("zero_mean: empty input, nothing to average")
        return
    if not bool(expected.representable.all()):
        no_claim("zero_mean: an intermediate may overflow")
        return
    got = out.detach().to("cpu", torch.float64)
    # mean(out) = mean(exact) + mean(out - exact); the exact output has mean 0
    # (up to float64 rounding of the reference and of this mean, gamma_N(f64)).
    n = got.numel()
    bound = tolerances.SLACK * expected.error.mean() + 2 * tolerances.gamma(n, torch.float64) * (
        got.abs().mean() + expected.value.abs().mean()
    )
    if not bool(bound.isfinite()):
        # The reference itself overflowed (float64 accumulates in float64: a
        # sum of huge float64 values exceeds the range): nothing to claim.
        no_claim("zero_mean: the bound is not finite")
        return
    actual = got.mean()
    assert actual.abs() <= bound, (
        f"{case.spec.name} declares centering, but its output's mean is {actual.item():.6g} "
        f"(allowed: |mean| <= {bound.item():.3g} for {case.dtype} over {n} elements)"
    )


# The shift is a drawn float of moderate size: it keeps x + c representable.
@layer_property(requires=("centering", "reference"), extra=st.floats(-1e3, 1e3))
def centering_ignores_a_shift(case: LayerCase, shift: float) -> None:
    """Centering is translation invariant: f(X + c) = f(X)."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    shifted = x + shift
    out, out_shifted = forward(case, module, x), forward(case, module, shifted)
    expected = reference(case, module, x)
    expected_shifted = reference(case, module, shifted)
    # Exactly, f(fl(X + c)) = f(X) + d - mean(d) with d = fl(X + c) - (X + c),
    # the rounding of the shift itself; the float64 reference values carry it.
    against = tolerances.Bounded(
        expected_shifted.value - expected.value + out.detach().to("cpu", torch.float64),
        expected.error + expected_shifted.error,
        expected.representable & expected_shifted.representable & out.detach().cpu().isfinite(),
        expected.dtype,
    )
    tolerances.assert_within_bound(out_shifted, against, what=f"{case.spec.name}(X + {shift!r}) vs {case.spec.name}(X)")


@layer_property(requires=("centering", "reference"))
def centering_is_idempotent(case: LayerCase) -> None:
    """Centering twice is centering once: f(f(X)) = f(X)."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    once = forward(case, module, x)
    twice = forward(case, module, once)
    first, second = reference(case, module, x), reference(case, module, once)
    # |f(Y) - Y| <= |f(Y) - ref(Y)| + |mean(Y)|, and |mean(Y)| is within the
    # mean of the first application's bound (see zero_mean_after_centering).
    mean_bound = first.error.mean() if first.error.numel() else torch.tensor(0.0, dtype=torch.float64)
    against = tolerances.Bounded(
        once.detach().to("cpu", torch.float64),
        second.error + mean_bound,
        first.representable & second.representable,
        first.dtype,
    )
    tolerances.assert_within_bound(twice, against, what=f"{case.spec.name} applied twice vs once")


@layer_property(requires=("nonnegative_output",))
def nonnegative_output(case: LayerCase) -> None:
    """No output element is negative (-0.0 counts as zero; NaN is finite_output's business)."""
    __tracebackhide__ = True
    out = forward(case, case.build(), case.make_input())
    negative = out < 0
    if negative.any():
        raise AssertionError(
            f"{case.spec.name} declares a non-negative output, but {int(negative.sum())} / {out.numel()} "
            f"elements are negative (smallest {out.min().item()!r})"
        )


@layer_property(requires=("relu_of",))
def relu_is_exact(case: LayerCase) -> None:
    """The output is exactly zero where the pre-activation is <= 0 and equals it elsewhere."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    out = forward(case, module, x)
    with torch.no_grad():
        pre = spec_call(case.spec, "relu_of", case.spec.relu_of, module, x)
    # relu passes NaN through (NaN > 0 is false, yet relu(NaN) is NaN).
    want = torch.where((pre > 0) | pre.isnan(), pre, torch.zeros_like(pre))
    if out.shape != want.shape:
        raise AssertionError(f"{case.spec.name}: output shape {tuple(out.shape)}, pre-activation {tuple(pre.shape)}")
    wrong = ~((out == want) | (out.isnan() & want.isnan()))
    if wrong.any():
        i = wrong.nonzero()[0].tolist()
        raise AssertionError(
            f"{case.spec.name}: output is not relu(pre-activation) at {int(wrong.sum())} / {out.numel()} "
            f"elements; at {i}: pre-activation {pre[tuple(i)].item()!r}, output {out[tuple(i)].item()!r}"
        )
