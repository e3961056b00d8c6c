"""Gradients: they reach every parameter, and they are the right ones."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator

import torch
from hypothesis import event
from torch.autograd.gradcheck import GradcheckError
from torch.func import functional_call

from properties.claims import no_claim
from properties.cases import LayerCase
from properties.authoring import call_backward, call_layer
from properties.catalogue._common import computed_in_lower_precision
from properties.registry import layer_property
from properties.spec import spec_call

# Where finite differences are meaningful: gradcheck steps by 1e-6 and
# allows an error of 1e-5 + 1e-3 * |gradient|; the rounding error of a
# difference quotient grows like |output| * 1e-16 / 1e-6, so inputs stay
# below 2**8 and no extremes are spliced in.  Dense random values only: an
# exact zero (or any constant) may sit on a kink such as relu's at 0, where
# the central difference (slope 1/2) and autograd (0) legitimately differ.
_SMOOTH = dict(regimes=("ordinary",), max_splices=0, limit=2.0**8, sparse=False)
# gradcheck's step (its default, passed explicitly): the finite differences move each leaf
# by this along a unit direction; _near_the_kink reads it too.
_GRADCHECK_EPS = 1e-6


@layer_property(regimes=("zeros", "constant", "ordinary", "tiny"), limit="moderate")
def gradient_flow(case: LayerCase) -> None:
    """After a backward pass every trainable parameter and the input have a gradient,
    present, and finite where the output is."""
    __tracebackhide__ = True
    module = case.build()
    x = case.make_input(requires_grad=True)
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not x.requires_grad and not trainable:
        no_claim("gradient_flow: nothing requires grad (an index input and no trainable parameter)")
        return
    out = call_layer(case, module, x)
    if not out.requires_grad:
        raise AssertionError(
            f"{case.spec.name}: the output does not require grad although the "
            f"{'input does' if x.requires_grad else 'layer has trainable parameters'}: "
            "forward cut the result out of autograd (.data, .detach(), .item() or a new tensor?)"
        )
    # Backpropagate a cotangent of 1/N per element rather than out.sum(): the
    # sum of many outputs could overflow in low precision, and so could a
    # backward reduction of ones (mean's backward sums the cotangent: 65536
    # ones exceed float16's range); 1/N sums to 1 and stays representable
    # (2**-20 is a float16 subnormal) for any input the size ladder draws.
    call_backward(case, out, torch.full_like(out, 1.0 / max(out.numel(), 1)), x)
    # Past an output that overflowed, the chain rule owes no finite gradient (KLDivLoss's
    # exp(target) in float16); whether the output should have overflowed is finite_output's question.
    output_finite = bool(out.detach().isfinite().all())
    if not output_finite:
        event("gradient_flow: the output overflowed, finiteness of the gradients not claimed")
    missing, nonfinite = [], []
    for name, parameter in [("input", x), *module.named_parameters()]:
        if not parameter.requires_grad:
            continue
        if parameter.grad is None:
            missing.append(name)
        elif output_finite and not bool(parameter.grad.isfinite().all()):
            nonfinite.append(name)
    problems = []
    if missing:
        # The hint belongs to a missing gradient only: a non-finite one is an overflow, not a cut.
        problems.append(
            f"received no gradient: {', '.join(missing)} "
            "(a parameter read through .data/.detach() in forward never learns)"
        )
    if nonfinite:
        problems.append(f"received a non-finite gradient: {', '.join(nonfinite)}")
    if problems:
        raise AssertionError(f"{case.spec.name}: after backward, {'; '.join(problems)}.")


@layer_property(dtypes=(torch.float64,), **_SMOOTH)
def gradients_match_finite_differences(case: LayerCase) -> None:
    """torch.autograd.gradcheck in float64, for the input and every trainable parameter
    (catches a detached sub-expression that still lets some gradient through)."""
    __tracebackhide__ = True
    function, leaves, labels = _as_function_of_leaves(case)
    if function is None:
        return
    # One call for all leaves: fast-mode gradcheck still compares each leaf's
    # Jacobian on its own ("... with respect to input i"), with one backward
    # pass instead of one per leaf.
    try:
        with _without_the_slow_mode_report():
            torch.autograd.gradcheck(function, leaves, eps=_GRADCHECK_EPS, fast_mode=True)
    except GradcheckError as error:
        culprit = _culprit(error, labels)
        unreached = [label for label in culprit.split(", ") if not _reaches(function, leaves, labels.index(label))]
        if unreached:
            what = ", ".join(unreached)
            raise AssertionError(
                f"{case.spec.name}: autograd says the output does not depend on {what} (no gradient "
                f"reaches it), but changing {what} changes the output (finite differences): forward "
                f"reads {what} outside autograd (.data, .detach(), .item() or a new tensor)"
            ) from None
        # A float32 forward's float64 finite differences carry float32 rounding (2.027 for a slope of 2).
        lower = computed_in_lower_precision(function, *leaves, dtype=torch.float64)
        if lower:
            raise AssertionError(
                f"{case.spec.name}: the gradient with respect to {culprit} disagrees with finite "
                f"differences because the layer {lower}. {_summary(error)}"
            ) from None
        raise AssertionError(
            f"{case.spec.name}: the gradient with respect to {culprit} disagrees with finite "
            f"differences (a detached or mis-derived part of forward?): {_summary(error)}"
        ) from None


@layer_property(requires=("supports_gradgrad",), dtypes=(torch.float64,), **_SMOOTH)
def second_derivatives_match_finite_differences(case: LayerCase) -> None:
    """torch.autograd.gradgradcheck in float64, for the input and every trainable parameter
    (catches a backward that is right but not itself differentiable, e.g. a custom
    autograd.Function reading detached tensors)."""
    __tracebackhide__ = True
    function, leaves, labels = _as_function_of_leaves(case)
    if function is None:
        return
    try:
        with _without_the_slow_mode_report():
            torch.autograd.gradgradcheck(function, leaves, eps=_GRADCHECK_EPS, fast_mode=True)
    except GradcheckError as error:
        lower = computed_in_lower_precision(function, *leaves, dtype=torch.float64)
        raise AssertionError(
            f"{case.spec.name}: second derivatives disagree with finite differences of the gradient "
            f"({_culprit(error, labels)}){' because the layer ' + lower + '.' if lower else ':'} {_summary(error)}"
        ) from None
    except RuntimeError as error:
        if not _NO_DOUBLE_BACKWARD.search(str(error)):
            raise
        # torch's own word that an operation's backward has no derivative (CPU flash
        # attention's, for one): a fact of the layer that its spec did not state.
        raise AssertionError(
            f"{case.spec.name}: its backward cannot be differentiated again: {str(error).splitlines()[0]}. "
            "If the layer is not meant to have second derivatives (gradient penalties and meta-learning need "
            "them), declare supports_gradgrad=False in its spec; otherwise it is a bug."
        ) from None


# What torch raises where an operation has no double backward.
_NO_DOUBLE_BACKWARD = re.compile(
    r"derivative for .* is not implemented|double backwards? (?:is|are) not supported|(?:does not|doesn't) support double backward"
)


@contextlib.contextmanager
def _without_the_slow_mode_report() -> Iterator[None]:
    """Fast-mode gradcheck, on a mismatch, recomputes the whole Jacobian column by
    column for its message: one forward pass per element, minutes for the size
    ladder's 1024 x 1024 weights (and again at every shrinking step).  The
    properties' messages need only which input failed, so that part is left out."""
    gradcheck_module = sys.modules["torch.autograd.gradcheck"]
    slow = getattr(gradcheck_module, "_run_slow_mode_and_get_error", None)
    if slow is None:  # another torch: its message as it is
        yield
        return
    gradcheck_module._run_slow_mode_and_get_error = lambda *args, **kwargs: ""
    try:
        yield
    finally:
        gradcheck_module._run_slow_mode_and_get_error = slow


def _near_the_kink(case: LayerCase, module: torch.nn.Module, x: torch.Tensor, varied: tuple[torch.Tensor, ...]) -> bool:
    """Whether a pre-activation the spec declares (``relu_of``) lies so near 0 that the
    finite differences may cross relu's kink, where a difference quotient of the gradient
    is a jump over the step (-260 against autograd's 0.19, the soak found it at the size
    ladder's million pre-activations).  A unit step of the leaves moves a bilinear
    pre-activation by at most the step times (1 + the sum of the leaves' norms)."""
    if case.spec.relu_of is None:
        return False
    with torch.no_grad():
        pre = spec_call(case.spec, "relu_of", case.spec.relu_of, module, x)
        reach = _GRADCHECK_EPS * (1 + sum(float(t.double().norm()) for t in varied))
        return pre.numel() > 0 and float(pre.abs().min()) <= reach


def _as_function_of_leaves(case: LayerCase) -> tuple[Callable[..., torch.Tensor] | None, tuple[torch.Tensor, ...], list[str]]:
    """The layer as a function of (input, *trainable parameters), the leaves to check it at
    (fresh, requiring grad) and their names; no function for an empty input."""
    module, x = case.build(), case.make_input()
    if x.numel() == 0:
        no_claim("gradcheck: empty input")
        return None, (), []
    trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
    names = list(trainable)

    # An index or mask input is not differentiable: it is held fixed, only the parameters vary.
    fixed = not x.is_floating_point()

    def function(*values: torch.Tensor) -> torch.Tensor:
        inp, held = (x, values) if fixed else (values[0], values[1:])
        parameters = dict(zip(names, held))
        return call_layer(case, lambda *args, **kwargs: functional_call(module, parameters, args, kwargs), inp)

    varied = (*trainable.values(),) if fixed else (x, *trainable.values())
    if not varied:
        no_claim("gradcheck: nothing to differentiate")
        return None, (), []
    if _near_the_kink(case, module, x, varied):
        no_claim("gradcheck: a pre-activation within the finite differences' step of relu's kink")
        return None, (), []
    leaves = tuple(t.detach().clone().requires_grad_(True) for t in varied)
    return function, leaves, names if fixed else ["input", *names]


def _reaches(function: Callable[..., torch.Tensor], leaves: tuple[torch.Tensor, ...], i: int) -> bool:
    """Whether autograd connects the output to ``leaves[i]`` (a gradient path exists)."""
    out = function(*leaves)
    if not out.requires_grad:
        return False
    return torch.autograd.grad(out, leaves[i], torch.ones_like(out), allow_unused=True)[0] is not None


def _culprit(error: Exception, labels: list[str]) -> str:
    """The leaf gradcheck's message points at ("with respect to input i"), else all of them."""
    found = re.search(r"with respect to input (\d+)", str(error))
    if found and int(found.group(1)) < len(labels):
        return labels[int(found.group(1))]
    return ", ".join(labels)


def _summary(error: Exception) -> str:
    """gradcheck's message without its long advice: what mismatched, numerical vs analytical."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())[:600]
