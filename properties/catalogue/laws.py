"""Laws of layer families: invariances, distributions, causality, equivariance, linearity.

Each law is declared in the spec (``invariances``, ``sums_to_one``, ...) and
runs only where declared.  Its tolerance comes from the spec's reference: the
bounds of every output the law combines add up.  Where the transformed input
is exact (a permutation, replacing positions), the law is checked against its
ideal form.  Where it is rounded (``a*x + c`` in the working dtype), the exact
law's own deviation on the rounded input, and the family's (an ``eps`` under
a square root breaks scale invariance by a little), is read from the
reference's float64 values, as ``centering_ignores_a_shift`` does: the layer
must deviate from the law exactly as the family does, within the bounds.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from hypothesis import strategies as st

from properties.claims import no_claim
from properties import tolerances
from properties.cases import LayerCase
from properties.authoring import assert_identical, forward, reference
from properties.registry import layer_property

_U64 = 2.0**-53  # the float64 combination of outputs below rounds too


def _outputs(case: LayerCase, module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tolerances.Bounded]:
    """The layer's output (as float64 on the CPU) and the reference on ``x``."""
    return forward(case, module, x).detach().to("cpu", torch.float64), reference(case, module, x)


def _overflowed(law: str, *inputs: torch.Tensor) -> bool:
    """Whether an input the law made from the drawn (finite) one overflowed the dtype.
    The laws are about finite inputs, and an inf anywhere may turn outputs far from
    it into NaN (a blocked bfloat16 conv2d multiplies it by zero): no claim then."""
    if all(bool(t.isfinite().all()) for t in inputs):
        return False
    no_claim(f"{law}: a transformed input overflowed the dtype")
    return True


def _assert_combination(
    actual: torch.Tensor, actual_ref: tolerances.Bounded, terms: list[tuple[float, torch.Tensor, tolerances.Bounded]],
    *, exact_law: bool, what: str,
) -> None:
    """``actual`` equals ``sum(c * out)`` over ``terms``, plus the law's exact deviation.

    ``actual_ref`` is the reference on ``actual``'s own input.  With
    ``exact_law`` the ideal form is checked (the transformation was exact);
    otherwise the exact law's deviation on the rounded input is read from the
    references' values.  Each computed output is within its reference's bound,
    so the combination is within the sum of the bounds (times |c|), plus the
    float64 rounding of combining them.
    """
    __tracebackhide__ = True
    for _, out, ref in terms:  # each output the law combines exists where the reference claims a finite value
        missing = ref.representable & ref.value.isfinite() & ref.error.isfinite() & ~out.isfinite()
        if bool(missing.any()):
            raise AssertionError(
                f"{what}: {int(missing.sum())} / {out.numel()} of the outputs it combines are inf/NaN "
                "where the exact value is finite"
            )
    value = sum(c * out for c, out, _ in terms)
    error = actual_ref.error + sum(abs(c) * ref.error for c, _, ref in terms)
    representable = torch.stack([actual_ref.representable, *(ref.representable for _, _, ref in terms)]).all(0)
    if not exact_law:
        value = value + actual_ref.value - sum(c * ref.value for c, _, ref in terms)
    magnitude = sum(abs(c) * ref.value.abs() for c, _, ref in terms)
    error = error + 4 * len(terms) * _U64 * magnitude / tolerances.SLACK
    representable = representable & value.isfinite()
    against = tolerances.Bounded(value, error, representable, actual_ref.dtype)
    tolerances.assert_within_bound(actual, against, what=what)


# a in [1/16, 16] and c in [-16, 16]: transformations of ordinary size, so the
# transformed input stays representable unless the drawn one is already huge
# (then the reference marks it, and no claim is made there).
@layer_property(
    requires=("invariances", "reference"),
    extra=st.tuples(st.floats(1 / 16, 16), st.floats(-16, 16)),
)
def invariant_to_shift_and_scale(case: LayerCase, scale_and_shift: tuple[float, float]) -> None:
    """f(a*x + c) = f(x) for a > 0 and a scalar c, for the invariances the spec declares
    (LayerNorm: both, RMSNorm: scale, softmax: shift)."""
    __tracebackhide__ = True
    a, c = scale_and_shift
    a = a if "scale" in case.spec.invariances else 1.0
    c = c if "shift" in case.spec.invariances else 0.0
    module, x = case.build(), case.make_input()
    moved = x * a + c
    if _overflowed("invariant_to_shift_and_scale", moved):
        return
    out, ref = _outputs(case, module, x)
    actual = forward(case, module, moved)
    _assert_combination(actual, reference(case, module, moved), [(1.0, out, ref)], exact_law=False, what=f"{case.spec.name}({a!r} * x + {c!r}) vs {case.spec.name}(x)")


def _dim_of(case: LayerCase, field: str, out: torch.Tensor) -> int | None:
    dim = getattr(case.spec, field)[0]
    if out.dim() == 0 or not -out.dim() <= dim < out.dim():
        no_claim(f"{field}: the output has no dim {dim}")
        return None
    return dim % out.dim()


@layer_property(requires=("sums_to_one", "reference"))
def rows_sum_to_one(case: LayerCase) -> None:
    """Along the declared dim the output is a probability distribution: no element is
    negative, and each row sums to one within the bound of its elements."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    computed = forward(case, module, x)
    ref = reference(case, module, x)
    dim = _dim_of(case, "sums_to_one", computed)
    if dim is None:
        return
    negative = computed < 0
    if bool(negative.any()):
        raise AssertionError(
            f"{case.spec.name}: {int(negative.sum())} / {computed.numel()} probabilities are negative "
            f"(smallest {computed.min().item()!r})"
        )
    out = computed.detach().to("cpu", torch.float64)
    n = out.shape[dim]
    if n == 0:
        no_claim("rows_sum_to_one: empty rows")
        return
    # Each element is within SLACK * error of its exact value; the exact row sums to one.
    total = tolerances.Bounded(
        torch.ones_like(out.sum(dim)),
        ref.error.sum(dim) + n * _U64 * ref.value.abs().sum(dim) / tolerances.SLACK,
        ref.representable.all(dim),
        ref.dtype,
    )
    tolerances.assert_within_bound(out.sum(dim), total, what=f"{case.spec.name}'s row sums along dim {dim}")


@layer_property(requires=("log_sums_to_one", "reference"))
def exp_rows_sum_to_one(case: LayerCase) -> None:
    """Along the declared dim the output's exp sums to one (log-probabilities):
    logsumexp of each row is zero within the bound of its elements."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    out, ref = _outputs(case, module, x)
    dim = _dim_of(case, "log_sums_to_one", out)
    if dim is None:
        return
    if out.shape[dim] == 0:
        no_claim("exp_rows_sum_to_one: empty rows")
        return
    # out_i = log p_i + d_i with |d_i| <= SLACK * e_i, so sum exp(out_i) = sum p_i exp(d_i)
    # is within the relative error r = sum p_i expm1(SLACK * e_i) of one: the
    # logsumexp is within -log1p(-r) (no claim where r >= 1), plus float64 rounding.
    relative = (ref.value.exp() * torch.expm1(tolerances.SLACK * ref.error)).sum(dim)
    bound = torch.where(relative < 1, -torch.log1p(-relative.clamp(max=1 - 1e-16)), math.inf)
    bound = bound + 4 * out.shape[dim] * _U64 * (1 + ref.value.abs().amax(dim))
    total = tolerances.Bounded(torch.zeros_like(bound), bound / tolerances.SLACK, ref.representable.all(dim), ref.dtype)
    tolerances.assert_within_bound(
        torch.logsumexp(out, dim), total, what=f"{case.spec.name}'s logsumexp of rows along dim {dim}"
    )


@layer_property(requires=("causal_along", "reference"), extra=st.integers(0, 2**16))
def causal_masking(case: LayerCase, position: int) -> None:
    """Changing the input at positions j and later (along the declared dim) changes no
    output at a position i < j."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    out, ref = _outputs(case, module, x)
    dim = _dim_of(case, "causal_along", out)
    if dim is None or x.shape[dim] < 2:
        no_claim("causal_masking: fewer than two positions")
        return
    j = 1 + position % (x.shape[dim] - 1)
    later = torch.arange(x.shape[dim], device=x.device) >= j
    later = later.view(-1, *([1] * (x.dim() - 1 - dim)))
    changed = torch.where(later, case.other_input(x), x)
    if _overflowed("causal_masking", changed):
        return
    # Masked positions contribute exp(-inf) = 0 exactly, but kernels may block
    # and reorder the sums differently for the two inputs: each prefix output is
    # within its bound of the same exact value.
    before = (slice(None),) * dim + (slice(0, j),)
    _assert_combination(
        forward(case, module, changed)[before], reference(case, module, changed)[before],
        [(1.0, out[before], ref[before])], exact_law=True,
        what=f"{case.spec.name}'s outputs at positions < {j} along dim {dim} after changing positions >= {j}",
    )


@layer_property(requires=("permutation_equivariant_along", "reference"))
def permutation_equivariant(case: LayerCase) -> None:
    """Permuting the input along the declared dim permutes the output the same way."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    out, ref = _outputs(case, module, x)
    dim = _dim_of(case, "permutation_equivariant_along", out)
    if dim is None or x.shape[dim] < 2:
        no_claim("permutation_equivariant: fewer than two positions")
        return
    generator = torch.Generator().manual_seed(case.input_recipe.seed)
    order = torch.randperm(x.shape[dim], generator=generator)
    permuted = x.index_select(dim, order.to(x.device))
    moved = ref.map(lambda t: t.index_select(dim, order))
    _assert_combination(
        forward(case, module, permuted), reference(case, module, permuted),
        [(1.0, out.index_select(dim, order), moved)], exact_law=True,
        what=f"{case.spec.name}(x permuted along dim {dim}) vs {case.spec.name}(x) permuted ({order.tolist()})",
    )


@layer_property(
    requires=("linear_in_input", "reference"),
    extra=st.tuples(st.floats(-4, 4), st.floats(-4, 4)),
)
def linear_in_its_input(case: LayerCase, coefficients: tuple[float, float]) -> None:
    """f(a*x + b*y) = a*f(x) + b*f(y) + (1 - a - b)*f(0): linear without a bias,
    affine with one."""
    __tracebackhide__ = True
    a, b = coefficients
    module, x = case.build(), case.make_input()
    y = case.other_input(x)
    combined = x * a + y * b
    if _overflowed("linear_in_its_input", y, combined):
        return
    terms = [
        (a, *_outputs(case, module, x)),
        (b, *_outputs(case, module, y)),
        (1.0 - a - b, *_outputs(case, module, torch.zeros_like(x))),
    ]
    _assert_combination(
        forward(case, module, combined), reference(case, module, combined), terms, exact_law=False,
        what=f"{case.spec.name}({a!r} * x + {b!r} * y) vs {a!r} * f(x) + {b!r} * f(y) + {1.0 - a - b!r} * f(0)",
    )


# -- dropout ----------------------------------------------------------------------------------

# The keep-rate test pools elements over fresh masks until it has SAMPLES of
# them and rejects when the kept fraction is further than
# eps = sqrt(ln(2 / ALPHA) / (2 n)) from 1 - p.  Hoeffding's inequality,
# P(|k/n - (1 - p)| > eps) <= 2 exp(-2 n eps^2), holds for every n: the
# false-alarm rate is at most ALPHA = 1e-6 per check, as the initialization
# property's Kolmogorov-Smirnov test.  At n = 2000, eps = 0.06: a drop
# probability of p where 1 - p is meant (p = 0.25) is far outside it.
ALPHA = 1e-6
SAMPLES = 2000
MAX_MASKS = 512


def _drop_probability(case: LayerCase) -> float:
    return float(case.constructor_args[case.spec.dropout_probability])


def _draws(case: LayerCase, kept: torch.Tensor) -> torch.Tensor:
    """Whether each independent draw kept its elements: one per element, or one per slice along
    the spec's ``dropout_mask_shared_along`` (a channel of nn.Dropout2d), which must agree."""
    shared = case.spec.dropout_mask_shared_along
    if not shared or kept.numel() == 0:  # all() and any() of an empty slice disagree
        return kept
    every, some = kept.all(dim=shared), kept.any(dim=shared)
    if bool((every != some).any()):
        i = (every != some).nonzero()[0].tolist()
        raise AssertionError(
            f"{case.spec.name}: the elements at {i} along dims {shared} were partly kept and partly dropped; "
            "the spec declares one draw for all of them (dropout_mask_shared_along)"
        )
    return every


def _shared_hint(case: LayerCase) -> str:
    return "" if case.spec.dropout_mask_shared_along else (
        ". A layer that drops whole channels (nn.Dropout1d, nn.Dropout2d) declares the dims one draw covers: "
        "dropout_mask_shared_along"
    )


def _nonzero_input(case: LayerCase) -> torch.Tensor:
    """The drawn input with zeros (which dropout keeps as zeros either way) replaced by ones."""
    x = case.make_input()
    return torch.where(x == 0, torch.ones_like(x), x)


@layer_property(requires=("dropout_probability",))
def same_seed_same_mask(case: LayerCase) -> None:
    """In train mode the same RNG seed gives the same output bit for bit, and (for
    0.1 <= p <= 0.9 and at least 64 elements) another seed a different mask."""
    __tracebackhide__ = True
    module, x = case.build(), _nonzero_input(case)
    first, again = forward(case, module, x), forward(case, module, x)
    assert_identical(first, again, what=f"{case.spec.name} twice with the same seed")
    p = _drop_probability(case)
    draws = _draws(case, first != 0)
    if 0.1 <= p <= 0.9 and draws.numel() >= 64:
        # Two seeds give equal masks with probability (p^2 + (1-p)^2)^n <= 0.82^64 < 1e-5.
        other = forward(dataclasses.replace(case, module_seed=case.module_seed + 7919), module, x)
        assert bool((draws != _draws(case, other != 0)).any()), (
            f"{case.spec.name}: two different seeds gave the same mask over {draws.numel()} independent draws "
            f"(p = {p}): the mask does not come from torch's RNG" + _shared_hint(case)
        )


@layer_property(requires=("dropout_probability",))
def identity_in_eval_mode(case: LayerCase) -> None:
    """In eval mode the output is the input, bit for bit."""
    __tracebackhide__ = True
    module, x = case.build(), case.make_input()
    module.eval()
    assert_identical(forward(case, module, x), x, what=f"{case.spec.name} in eval mode vs its input")


@layer_property(requires=("dropout_probability",), dtypes=(torch.float32, torch.float64))
def dropout_preserves_the_expectation(case: LayerCase) -> None:
    """In train mode each element is kept with probability 1 - p (a Hoeffding test with a
    false-alarm rate of at most 1e-6) and scaled by exactly 1 / (1 - p), so E[f(x)] = x."""
    __tracebackhide__ = True
    module, x = case.build(), _nonzero_input(case)
    if x.numel() == 0:
        no_claim("dropout: empty input")
        return
    p = _drop_probability(case)
    x64 = x.detach().to("cpu", torch.float64)
    scaled = x64 / (1 - p) if p < 1 else torch.zeros_like(x64)
    kept = total = 0
    for k in range(MAX_MASKS):
        out = forward(dataclasses.replace(case, module_seed=case.module_seed + k), module, x)
        out64 = out.detach().to("cpu", torch.float64)
        is_kept = out64 != 0
        # torch multiplies by the rounded 1 / (1 - p): two roundings of the working dtype.
        allowed = 2 * tolerances.unit_roundoff(case.dtype) * scaled.abs() + torch.finfo(case.dtype).tiny
        fits = scaled.abs() <= torch.finfo(case.dtype).max  # else the scaled element overflows: no claim
        wrong = is_kept & fits & ((out64 - scaled).abs() > allowed)
        if bool(wrong.any()):
            i = wrong.nonzero()[0].tolist()
            raise AssertionError(
                f"{case.spec.name}: a kept element is not the input times 1 / (1 - p) = {1 / (1 - p) if p < 1 else math.inf:.6g}: "
                f"at {i} input {x64[tuple(i)].item()!r}, output {out64[tuple(i)].item()!r} (p = {p})"
            )
        draws = _draws(case, is_kept)
        kept += int(draws.sum())
        total += draws.numel()
        if total >= SAMPLES:
            break
    threshold = math.sqrt(math.log(2 / ALPHA) / (2 * total))
    rate = kept / total
    assert abs(rate - (1 - p)) <= threshold, (
        f"{case.spec.name}: kept {kept} of {total} independent draws ({rate:.3f}), expected 1 - p = {1 - p:.3f} "
        f"within {threshold:.3f} (Hoeffding, false-alarm rate <= {ALPHA})" + _shared_hint(case)
    )
