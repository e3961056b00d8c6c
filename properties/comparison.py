"""Comparing two computations of a layer when the spec declares no reference.

Without an error analysis the framework cannot say how accurate a layer must
be, but it can say how accurate the layer *is* on the drawn example, and hold
every other way of computing the same output to that.  As PyTorch's
``torch._dynamo.utils.same`` and OpInfo's reference tests do, errors are
measured against float64, never between two low-precision results:

* **The exact value** is the layer's *float64 twin*: the same module deep-copied
  and cast to float64 (casting parameters and buffers up is exact), run on the
  input cast up to float64, on the CPU, with the same RNG seed.
* **The canonical computation** is the layer run the ordinary way: eager, in
  train mode unless the property says otherwise, on the whole contiguous batch.
  Its error against the twin is the yardstick.
* **A variant** (a sample alone, a strided input, eval mode, TorchScript, a
  compiled module, an equivalent module) passes where, element by element,
  ``|variant - exact| <= K * (|canonical - exact| + max|canonical - exact|)
  + T * (sensitivity + eps * |exact| + tiny)``.

The comparison is per element, so a bug that changes one element is caught;
the largest canonical error over the whole output is added so that an
element the canonical computation happened to get (nearly) right does not make
the bound (nearly) zero there.  ``sensitivity`` is how far the twin's output moves when
every floating argument and every floating parameter and buffer moves by one ulp of the
working dtype in a random direction (the larger of two draws): the size of the
rounding any backward-stable kernel commits, propagated through the layer's
own conditioning.  It is what keeps cancellation (an output near zero made of
large terms) from raising false alarms, which a bound relative to ``|exact|``
alone would.  On CUDA in float32 with TF32 allowed, the
ulp is TF32's (``rounding_step``).

What this guarantees: a variant is at most a few times less accurate than the
canonical computation, plus a few ulps of the working dtype at the scale of
the computation.  What it cannot: it says nothing about the canonical
computation's own accuracy.  A layer that is consistently inaccurate (a float16
sum without float32 accumulation), or whose bug does not depend on the dtype
(the wrong axis, a missing bias, a special case for one element), computes the
same in its twin and in every variant; only a declared ``reference`` (the
``matches_reference`` property) catches those.  The twin is exact only for a
layer that computes in its input's dtype: a layer that casts to a fixed dtype
inside ``forward`` computes the same wrongness in its twin.  In float64 the
twin is the canonical computation itself (its error reads zero), so the
``T`` term alone carries the bound there.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch

from properties import tolerances

__all__ = [
    "AGREEMENT_FACTOR",
    "ULPS",
    "Float64Twin",
    "agreement_bound",
    "fits",
    "float64_twin",
    "rounding_step",
    "sum_of_bounds",
]

# K: a variant may be this many times as far from the exact value as the
# canonical computation (its error at the element plus its largest anywhere).
# Two equally good kernels that sum in different orders commit errors from the
# same heavy-tailed distribution, but not at the same elements: the largest
# error of one is not where the other's is.  4 keeps a margin over that
# (torch._dynamo.utils.same allows 2-3 times the RMS over the whole tensor).
AGREEMENT_FACTOR = 4.0
# T: ulps of the working dtype a variant may differ by on top of that, at the
# output's magnitude and at the layer's sensitivity to one-ulp perturbations.
# Two correctly rounded results of the same float32 accumulation differ by at
# most one ulp of the output (2 * eps/2 * |exact|); a different summation order
# moves the result by a few input-ulps propagated through the layer.  4 covers
# both with a factor of two, and is still far below the bugs the properties
# look for (a changed batch statistic, a dropped element, a dropout mask).
ULPS = 4.0
# Perturbations drawn for the sensitivity: one random direction can nearly
# cancel (two equal terms perturbed in opposite directions); the larger of two
# seldom does, and the largest-error term covers the rest.
_SENSITIVITY_DRAWS = 2


@dataclasses.dataclass(frozen=True)
class Float64Twin:
    """The exact value of a layer's output on one input, without an error analysis.

    ``value``: the float64 twin's output (CPU, float64).  ``sensitivity``: how
    far that output moves when every input and floating parameter moves by one
    ulp (``eps``, relative).  ``dtype``: the working dtype of the computations
    it judges; ``eps``: one ulp at 1.0 of what they round to (``rounding_step``).
    ``float64_error``: in float64, where the twin is the canonical computation
    itself, an estimate of its error (``_float64_error``); None otherwise.
    ``moderate``: whether the input and every floating parameter and buffer
    were at most about the square root of the accumulation dtype's range
    (``properties.strategies.moderate_limit``), so that the squares and
    products of two values that common layers form inside fit; beyond it a
    kernel may overflow inside where the twin's float64 did not.
    """

    value: torch.Tensor
    sensitivity: torch.Tensor
    dtype: torch.dtype
    eps: float
    float64_error: torch.Tensor | None = None
    moderate: bool = True


def rounding_step(dtype: torch.dtype, device: str) -> float:
    """One ulp at 1.0 of what a computation in ``dtype`` on ``device`` rounds to.

    The dtype's epsilon, except float32 on CUDA where torch allows reduced-precision
    products: TF32 (10-bit mantissa, 2**-10) for cuDNN convolutions when
    ``torch.backends.cudnn.allow_tf32`` (on by default) or for matmuls at
    ``torch.get_float32_matmul_precision() == "high"``, bfloat16's 2**-7 at "medium".
    """
    eps = torch.finfo(dtype).eps
    if device == "cuda" and dtype == torch.float32:
        reduced = {"high": 2.0**-10, "medium": 2.0**-7}.get(torch.get_float32_matmul_precision(), 0.0)
        if torch.backends.cudnn.allow_tf32:
            reduced = max(reduced, 2.0**-10)
        eps = max(eps, reduced)
    return eps


def float64_twin(
    module: torch.nn.Module,
    x: torch.Tensor,
    *,
    run: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
    seed: int,
) -> Float64Twin:
    """Run a float64 copy of ``module`` on ``x`` cast up, and measure its sensitivity.

    ``run(module, x)`` calls the module (with the RNG seeded, for layers that
    draw random numbers); ``seed`` seeds the perturbation directions.  The
    module itself is left untouched.  Raises whatever the float64 copy raises.
    """
    twin = copy.deepcopy(module).to(device="cpu", dtype=torch.float64)
    x64 = x.detach().to(device="cpu", dtype=torch.float64)
    # One ulp at 1.0: 1 + eps is representable in float64 for every working dtype's eps.
    eps = rounding_step(x.dtype, x.device.type)
    with torch.no_grad():
        value = run(twin, x64).to(torch.float64)
        floats = [t for t in (*twin.parameters(), *twin.buffers()) if t.is_floating_point()]
        originals = [t.clone() for t in floats]
        generator = torch.Generator().manual_seed(seed)
        sensitivity = torch.zeros_like(value)

        def perturb(t: object) -> object:
            return t * (1 + eps * _signs(t, generator)) if isinstance(t, torch.Tensor) and t.is_floating_point() else t

        # Every floating argument moves, not only the main input: equal key rows of
        # attention with different values tie exactly until one of them moves.
        hook = twin.register_forward_pre_hook(
            lambda _, args, kwargs: (tuple(map(perturb, args)), {k: perturb(v) for k, v in kwargs.items()}),
            with_kwargs=True,
        )
        try:
            for _ in range(_SENSITIVITY_DRAWS):
                for held, original in zip(floats, originals):
                    held.copy_(original * (1 + eps * _signs(original, generator)))
                moved = run(twin, x64).to(torch.float64)
                sensitivity = torch.maximum(sensitivity, (moved - value).abs())
        finally:
            hook.remove()
        estimate = _float64_error(module, x, value, run) if x.dtype == torch.float64 else None
    return Float64Twin(value, sensitivity, x.dtype, eps, estimate)


def _float64_error(module: torch.nn.Module, x: torch.Tensor, value: torch.Tensor, run: Callable) -> torch.Tensor:
    """The float64 computation's error, estimated as the same layer's float32 error
    scaled by the ratio of their epsilons (rounding errors are linear in the unit
    roundoff to first order).  Input perturbations alone miss the rounding inside
    long reductions (attention over 1024 keys: some 100 ulps); zero where float32
    overflows or the float32 copy cannot run."""
    try:
        copy32 = copy.deepcopy(module).to(device="cpu", dtype=torch.float32)
        x32 = x.detach().to(device="cpu", dtype=torch.float32)
        error = (run(copy32, x32).to(torch.float64) - value).abs()
    except Exception:  # a layer that only runs in float64: the sensitivity term alone
        return torch.zeros_like(value)
    if error.shape != value.shape:
        return torch.zeros_like(value)
    scale = torch.finfo(torch.float64).eps / torch.finfo(torch.float32).eps
    return torch.where(error.isfinite(), error * scale, 0.0)


def _signs(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random +1/-1 of ``like``'s shape (float64, CPU)."""
    return torch.randint(0, 2, like.shape, generator=generator, dtype=torch.float64) * 2 - 1


def agreement_bound(canonical: torch.Tensor, twin: Float64Twin) -> tolerances.Bounded:
    """Where any other computation of ``canonical``'s output must lie (see the module docstring).

    A ``Bounded`` around the twin's value, for ``tolerances.assert_within_bound``:
    claimed where the twin and the canonical output are both finite and the
    bound stays within the dtype's range; where both are NaN (0/0 in any
    precision), the other computation must give NaN too; elsewhere no claim
    (the working dtype overflowed where float64 did not).
    """
    got = canonical.detach().to(device="cpu", dtype=torch.float64)
    exact, sensitivity = twin.value, twin.sensitivity
    if tuple(got.shape) != tuple(exact.shape):
        raise tolerances.ToleranceExceeded(
            f"the canonical output has shape {tuple(got.shape)}, its float64 twin {tuple(exact.shape)}"
        )
    info = torch.finfo(twin.dtype)
    error = (got - exact).abs()
    if twin.float64_error is not None:
        error = torch.maximum(error, twin.float64_error)
    claimed = exact.isfinite() & got.isfinite() & sensitivity.isfinite()
    # The canonical error at one element is one draw, small by luck where another
    # kernel's is not; rounding errors are heavy-tailed (attention over 1024 keys:
    # the largest is 15-25 times the RMS), so the tail term is the largest one.
    peak = error[claimed].max() if bool(claimed.any()) else torch.tensor(0.0, dtype=torch.float64)
    allowed = AGREEMENT_FACTOR * (error + peak) + ULPS * (sensitivity + twin.eps * exact.abs() + info.tiny)
    # Beyond the dtype's range a variant may overflow where the canonical
    # computation did not (another order of the same partial sums).
    claimed &= exact.abs() + allowed <= info.max
    claimed &= sensitivity / twin.eps <= info.max
    both_nan = exact.isnan() & got.isnan()
    allowed = torch.where(claimed, allowed, torch.zeros_like(allowed))
    # assert_within_bound allows SLACK times the error it is given.
    return tolerances.Bounded(exact, allowed / tolerances.SLACK, claimed | both_nan, twin.dtype)


def sum_of_bounds(first: tolerances.Bounded, second: tolerances.Bounded) -> tolerances.Bounded:
    """Around ``first``'s value, with both errors added: two sides, each within its own bound
    of the same exact value (a layer and its equivalent, each against its own twin)."""
    if tuple(first.value.shape) != tuple(second.value.shape):
        raise tolerances.ToleranceExceeded(
            f"shapes differ: {tuple(first.value.shape)} vs {tuple(second.value.shape)}"
        )
    return tolerances.Bounded(
        first.value, first.error + second.error, first.representable & second.representable, first.dtype
    )


def fits(twin: Float64Twin) -> torch.Tensor:
    """Where the exact output, with ``ULPS`` ulps and the layer's sensitivity on top, fits ``twin.dtype``.

    Only the output: whether the layer's intermediates fit is not known
    without an error analysis (see ``finite_output``).
    """
    info = torch.finfo(twin.dtype)
    margin = ULPS * (twin.sensitivity + twin.eps * twin.value.abs())
    return twin.value.isfinite() & twin.sensitivity.isfinite() & (twin.value.abs() + margin <= info.max)
