"""Robustness: inputs left alone, determinism, train/eval parity, memory layout,
finite outputs in low precision, degenerate inputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import event, strategies as st

from properties import tolerances
from properties.authoring import (
    accumulated_moderate_limit,
    assert_identical,
    assert_same_computation,
    comparable,
    exact_output,
    forward,
)
from properties.cases import LayerCase
from properties.claims import no_claim
from properties.comparison import Float64Twin, fits
from properties.registry import layer_property


@layer_property()
def leaves_its_input_alone(case: LayerCase) -> None:
    """Forward does not modify its input: same values, same autograd version counter."""
    __tracebackhide__ = True
    x = case.make_input()
    before, version = x.clone(), x._version
    forward(case, case.build(), x)
    assert x._version == version, (
        f"{case.spec.name}: forward modified its input in place (version counter {version} -> {x._version})"
    )
    assert_identical(x, before, what=f"{case.spec.name}: the input after forward vs before")


@layer_property()
def is_deterministic(case: LayerCase) -> None:
    """The same input and state give the same output, bit for bit."""
    __tracebackhide__ = True
    module = case.build()
    first = forward(case, module, case.make_input())
    second = forward(case, module, case.make_input())
    assert_identical(second, first, what=f"{case.spec.name}: a second forward of the same input")


@layer_property()
def train_and_eval_agree(case: LayerCase) -> None:
    """Train and eval mode compute the same, unless the spec declares they differ
    (catches dropout or other randomness left on)."""
    __tracebackhide__ = True
    if case.spec.train_eval_differ or case.spec.stochastic:
        which = "train_eval_differ" if case.spec.train_eval_differ else "stochastic"
        pytest.skip(f"{case.spec.name} declares {which}")
    module, x = case.build(), case.make_input()
    trained = forward(case, module.train(), x)
    evaluated = forward(case, module.eval(), x)
    expected = exact_output(case, module, x)  # eval mode: the canonical computation
    assert_same_computation(trained, evaluated, expected, what=f"{case.spec.name} in train mode vs eval mode")


# Registration order is collection order (see ``properties.catalogue``). The
# batch, equivalence and algebra families have always been collected between
# robustness's properties: imported here, between its definitions, they still are.
import properties.catalogue.batch  # noqa: E402, F401  (registers samples_are_independent)


def _non_contiguous(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``x`` in a non-contiguous layout (strided where a transpose stays contiguous)."""
    if layout == "transposed" and x.dim() >= 2:
        transposed = x.transpose(0, 1).contiguous().transpose(0, 1)
        if not transposed.is_contiguous():
            return transposed
    # Every other element of a buffer twice the size: strided in the last dimension.
    wide = torch.empty((*x.shape, 2), dtype=x.dtype, device=x.device)
    wide[..., 0] = x
    return wide[..., 0]


@layer_property(extra=st.sampled_from(["strided", "transposed"]))
def ignores_memory_layout(case: LayerCase, layout: str) -> None:
    """Non-contiguous inputs (strided, transposed) give the same result as contiguous ones."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    strided = _non_contiguous(x, layout)
    if strided.is_contiguous():  # one element, or sides of one: no other layout exists
        no_claim("ignores_memory_layout: layout stayed contiguous")
    out = forward(case, module, x)
    expected = exact_output(case, module, x)
    assert_same_computation(
        forward(case, module, strided), out, expected, what=f"{case.spec.name}: {layout} input vs contiguous input"
    )


# As above: equivalence and algebra register before finite_output.
import properties.catalogue.equivalence  # noqa: E402, F401  (registers matches_reference, matches_equivalents)
import properties.catalogue.algebra  # noqa: E402, F401  (registers the algebra family)


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
