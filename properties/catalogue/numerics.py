"""Numbers: the output against the exact reference, twins, algebraic laws, finiteness."""

from __future__ import annotations

import torch
from hypothesis import event, strategies as st

from properties.claims import no_claim
from properties import tolerances
from properties.cases import LayerCase
from properties.catalogue._common import (
    accumulated_moderate_limit,
    assert_same_computation,
    comparable,
    compared_modes,
    comparison_bound,
    exact_output,
    float64_twin_of,
    forward,
    reference,
)
from properties.comparison import Float64Twin, fits, sum_of_bounds
from properties.registry import layer_property
from properties.spec import spec_call


@layer_property(family="equivalence", requires=("reference",))
def matches_reference(case: LayerCase) -> None:
    """The output is within the rounding-error bound of the spec's exact reference,
    in train and in eval mode (eval only for a stochastic layer: the reference describes eval)."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    for mode in compared_modes(case):
        module.train(mode == "train")
        out = forward(case, module, x)
        expected = reference(case, module, x)
        tolerances.assert_within_bound(out, expected, what=f"{case.spec.name} output ({mode} mode) vs its reference")


@layer_property(family="equivalence", requires=("equivalents",))
def matches_equivalents(case: LayerCase) -> None:
    """The layer computes the same as each declared equivalent built from its parameters
    (MyLinear = nn.Linear + ReLU with the weight transposed), in train and in eval mode
    (eval only for a stochastic layer)."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    for mode in compared_modes(case):
        module.train(mode == "train")
        out = forward(case, module, x)
        expected = exact_output(case, module, x)
        for name, make in case.spec.equivalents.items():
            twin = spec_call(case.spec, "equivalents", make, module)
            if isinstance(twin, torch.nn.Module):
                twin.train(module.training)
            got, what = forward(case, twin, x), f"{name} vs {case.spec.name} ({mode} mode)"
            if isinstance(expected, Float64Twin):
                # No reference: each side within its own bound of its own float64
                # twin, and the two twins' exact values the same function.
                both = sum_of_bounds(
                    comparison_bound(out, expected, what=what),
                    comparison_bound(got, float64_twin_of(case, twin, x), what=what),
                )
                tolerances.assert_within_bound(got, both, what=what)
            else:
                assert_same_computation(got, out, expected, what=what)


@layer_property(family="algebra", requires=("centering", "reference"))
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
@layer_property(family="algebra", requires=("centering", "reference"), extra=st.floats(-1e3, 1e3))
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


@layer_property(family="algebra", requires=("centering", "reference"))
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


@layer_property(family="algebra", requires=("nonnegative_output",))
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


@layer_property(family="algebra", requires=("relu_of",))
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


# Low precision only: float32 and float64 accumulate in themselves, so a sum
# that overflows there has exceeded the dtype's range and no claim is made;
# in float16/bfloat16 a correct layer accumulates in float32.  The drawn input
# is rescaled so that its largest element sits ``2**headroom`` below the
# dtype's largest finite number, and on half of the examples made
# non-negative (same-sign values are what makes a sum overflow; random signs
# cancel): where overflow can happen, it does.  Without a reference the exact
# output is the float64 twin's and the top is capped at ``moderate_limit`` of
# the dtype the layer accumulates in (float32: float16's whole range, 2**63 for
# bfloat16; float16 itself, 128, where the spec declares accumulation="working"):
# only the output is known to fit, not every intermediate.
@layer_property(
    family="robustness",
    dtypes=(torch.float16, torch.bfloat16),
    regimes=("constant", "ordinary", "mixed"),
    extra=st.tuples(st.integers(1, 12), st.booleans()),
    float_input=True,
)
def finite_output(case: LayerCase, headroom_and_sign: tuple[int, bool]) -> None:
    """In float16/bfloat16, large finite inputs whose exact result (and every
    intermediate, accumulated in float32) fits the dtype give no inf or NaN."""
    __tracebackhide__ = True
    headroom, same_sign = headroom_and_sign
    module, x = comparable(case), case.make_input()
    if same_sign:
        x = x.abs()
    top = torch.finfo(case.dtype).max
    if case.spec.reference is None:
        top = min(top, accumulated_moderate_limit(case))
    target = top / 2.0**headroom
    if case.spec.input_limit is not None:
        target = min(target, case.spec.input_limit)  # never outside the declared domain
    peak = x.abs().max().item() if x.numel() else 0.0
    # All zeros (the simplest draw) become all equal at the target: the
    # classic trigger of an overflowing sum.
    x = (x.double() * (target / peak)).to(case.dtype) if peak > 0 else torch.full_like(x, target)
    out = forward(case, module, x)
    expected = exact_output(case, module, x)
    if isinstance(expected, Float64Twin):
        if not expected.moderate:
            no_claim("finite_output: a parameter beyond the moderate limit, without a reference")
            return
        owed = fits(expected)
    else:
        # An infinite exact value or bound is no claim (as in assert_within_bound).
        owed = expected.representable & expected.value.isfinite() & expected.error.isfinite()
    if tuple(out.shape) != tuple(owed.shape):
        raise AssertionError(f"{case.spec.name}: output shape {tuple(out.shape)}, exact {tuple(owed.shape)}")
    if out.numel() and not bool(owed.any()):
        no_claim("finite_output: no output owes a finite value (the exact result overflows)")
    bad = owed & ~out.detach().cpu().isfinite()
    if bad.any():
        i = bad.nonzero()[0].tolist()
        raise AssertionError(
            f"{case.spec.name}: {int(bad.sum())} / {out.numel()} outputs are inf/NaN where the exact result "
            f"fits {case.dtype}; at {i} (input scaled to {target:.3g}, 2**-{headroom} of the top): computed "
            f"{out[tuple(i)].item()!r}, exact {expected.value[tuple(i)].item()!r}{_working_dtype_hint(case)}"
        )


def _working_dtype_hint(case: LayerCase) -> str:
    """For an overflow the float32 accumulation torch's kernels use would have avoided."""
    if case.spec.accumulation == "working" or case.dtype not in (torch.float16, torch.bfloat16):
        return ""
    return (
        ". A layer that computes in the working dtype by design (torch's LPPool1d raises x to the power p, "
        'its Fold sums overlapping patches, in float16) declares accumulation="working" in its spec'
    )


def _degenerate(case: LayerCase, kind: str) -> torch.Tensor | None:
    """The drawn input turned into a degenerate one of ``kind``, or None if the spec rules it out."""
    x = case.make_input()
    batch = case.batch_ndim(x)
    sides = case.spec.batch_sides
    if kind == "empty":
        if batch == 0 or not case.spec.allows_empty or sides.get(0, (0,))[0] > 0:
            return None
        return x.new_empty((0, *x.shape[1:]))
    if kind == "single element":
        if any(low > 1 for dim, (low, _) in sides.items() if dim < batch):
            return None
        one = 1.5 if x.is_floating_point() else case.spec.index_range(case.constructor_args)[0]
        return x.new_full((1,) * batch + tuple(x.shape[batch:]), one)
    if kind == "all equal":
        return torch.full_like(x, x.flatten()[0].item() if x.numel() else 1.5)
    if not x.is_floating_point():  # the ends of the index range
        low, high = case.spec.index_range(case.constructor_args)
        ends = torch.tensor([low, high - 1])
        pick = torch.randint(2, x.shape, generator=torch.Generator().manual_seed(case.input_recipe.seed))
        return ends[pick].to(dtype=x.dtype, device=case.device)
    info = torch.finfo(case.dtype)
    edges = torch.tensor([info.max, -info.max, info.tiny, -info.tiny, 0.0], dtype=torch.float64)
    if case.spec.input_limit is not None:
        edges = edges.clamp(-case.spec.input_limit, case.spec.input_limit)  # the domain's own limits
    generator = torch.Generator().manual_seed(case.input_recipe.seed)
    pick = torch.randint(len(edges), x.shape, generator=generator)
    return edges[pick].to(dtype=case.dtype, device=case.device)


@layer_property(
    family="robustness",
    extra=st.sampled_from(["empty", "single element", "all equal", "dtype limits"]),
)
def handles_degenerate_inputs(case: LayerCase, kind: str) -> None:
    """Empty batches, a single element, all-equal values and values at the dtype's
    limits give what the reference says (the mean of an empty tensor is NaN);
    without a reference: no exception, the float64 twin's shape, and finite
    values where the twin's are (inputs of moderate size only)."""
    __tracebackhide__ = True
    x = _degenerate(case, kind)
    if x is None:
        no_claim(f"degenerate: {kind} ruled out by the spec")
        return
    module = comparable(case)
    try:
        out = forward(case, module, x)
    except Exception as error:
        raise AssertionError(
            f"{case.spec.name}: forward raised {type(error).__name__} on a degenerate input ({kind}, "
            f"shape {tuple(x.shape)}): {error}"
        ) from None
    what = f"{case.spec.name} on a degenerate input ({kind}, shape {tuple(x.shape)})"
    expected = exact_output(case, module, x)
    if not isinstance(expected, Float64Twin):
        tolerances.assert_within_bound(out, expected, what=what)
        return
    # The twin runs the same code, so its values say nothing about a special
    # case for degenerate inputs; its finiteness says what the working dtype
    # owes (no division by an underflowed epsilon, no 0/0 float64 avoids).
    if tuple(out.shape) != tuple(expected.value.shape):
        raise AssertionError(f"{what}: output shape {tuple(out.shape)}, the float64 twin's {tuple(expected.value.shape)}")
    if not expected.moderate:
        event("degenerate: input or parameters beyond the moderate limit, finiteness not claimed")
        return
    bad = fits(expected) & ~out.detach().cpu().isfinite()
    if bad.any():
        i = bad.nonzero()[0].tolist()
        raise AssertionError(
            f"{what}: {int(bad.sum())} / {out.numel()} outputs are inf/NaN where the float64 twin's fit "
            f"{case.dtype}; at {i}: computed {out[tuple(i)].item()!r}, float64 twin {expected.value[tuple(i)].item()!r}"
            f"{_working_dtype_hint(case)}"
        )
