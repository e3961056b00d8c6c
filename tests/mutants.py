"""Realistic broken variants of the lesson's layers, each with the bug it plants.

Each mutant is a ``LayerSpec`` derived from a correct spec with
``dataclasses.replace``, so the gate judges it by the same declared facts as
the layer it imitates.  ``tests/test_mutants.py`` asserts that every listed
property catches its mutant under the ``ci`` profile and that the correct
layers pass everything.  ``python -m tests.mutants`` prints the README's
"bug class -> properties" table, with the gallery's mutants (tests/gallery_mutants.py).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from layers.known_bad import TextbookMyLinear
from layers.lesson import CenteredLayer, MyLinear, MyLinearWithBuiltin
from layers.specs import centered_spec, my_linear_spec, my_linear_with_builtin_spec
from properties import LayerSpec
from tests.gallery_mutants import GALLERY_MUTANTS


class Mutant(NamedTuple):
    bug_class: str
    spec: LayerSpec
    caught_by: frozenset[str]


def _mutant(bug_class: str, spec: LayerSpec, module: type, *caught_by: str) -> Mutant:
    return Mutant(bug_class, dataclasses.replace(spec, name=module.__name__, module=module), frozenset(caught_by))


# -- detached tensors ----------------------------------------------------------


class DetachedWeightBuiltin(MyLinearWithBuiltin):
    """The weight read through .detach(): right numbers, the weight never learns."""

    def forward(self, X):
        return F.relu(F.linear(X, self.linear.weight.detach(), self.linear.bias))


class DetachedMeanCentered(CenteredLayer):
    """The mean detached: gradients still flow, but the wrong ones (identity, not I - 1/N)."""

    def forward(self, X):
        return X - X.mean().detach()


class ItemMeanCentered(CenteredLayer):
    """The mean taken out as a Python float with .item()."""

    def forward(self, X):
        return X - X.mean().item()


class _MatmulWithDetachedBackward(torch.autograd.Function):
    """``X @ W`` with a hand-written backward whose values are right but which reads
    detached tensors, so the gradient itself has no gradient."""

    @staticmethod
    def forward(ctx, X, weight):
        ctx.save_for_backward(X, weight)
        return torch.matmul(X, weight)

    @staticmethod
    def backward(ctx, grad):
        X, weight = (t.detach() for t in ctx.saved_tensors)
        rows, grad_rows = X.reshape(-1, weight.shape[0]), grad.reshape(-1, weight.shape[1])
        return (grad_rows @ weight.T).reshape(X.shape), rows.T @ grad_rows


class CustomBackwardMyLinear(MyLinear):
    """A custom autograd.Function whose backward is right once, not twice: double
    backward (gradient penalties, Hessian-vector products) silently drops a term."""

    def forward(self, X):
        return F.relu(_MatmulWithDetachedBackward.apply(X, self.weight) + self.bias)


# -- wrong reduction axis or scope ----------------------------------------------


class RowwiseCentered(CenteredLayer):
    """Centers each row (last axis) instead of the whole tensor."""

    def forward(self, X):
        return X - X.mean(dim=-1, keepdim=True)


class BatchwiseCentered(CenteredLayer):
    """Centers over the first axis only."""

    def forward(self, X):
        return X - X.mean(dim=0)


# -- activations ----------------------------------------------------------------


class NoReluMyLinear(MyLinear):
    """Missing activation."""

    def forward(self, X):
        return torch.matmul(X, self.weight) + self.bias


class LeakyReluMyLinear(MyLinear):
    """Substituted activation: leaky ReLU."""

    def forward(self, X):
        return F.leaky_relu(torch.matmul(X, self.weight) + self.bias, 0.01)


class ExtraSigmoidBuiltin(MyLinearWithBuiltin):
    """Extra activation after the ReLU."""

    def forward(self, X):
        return torch.sigmoid(F.relu(self.linear(X)))


# -- parameters: bias, transposition, registration, initialization ---------------


class NoBiasBuiltin(MyLinearWithBuiltin):
    """Missing bias in the built-in variant."""

    def forward(self, X):
        return F.relu(F.linear(X, self.linear.weight))


class TransposedMyLinear(MyLinear):
    """F.linear on the (in_units, units) weight: X @ weight.T (fails unless square)."""

    def forward(self, X):
        return F.relu(F.linear(X, self.weight, self.bias))


class FrozenBiasMyLinear(MyLinear):
    """The bias frozen by mistake."""

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__(in_units, units, device=device, dtype=dtype)
        self.bias.requires_grad_(False)


class UnregisteredBiasMyLinear(MyLinear):
    """The bias a plain tensor attribute: .to(), state_dict and optimizers miss it."""

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__(in_units, units, device=device, dtype=dtype)
        del self.bias
        self.bias = torch.randn(units, device=device, dtype=dtype)


class ZeroInitMyLinear(MyLinear):
    """Degenerate initialization: all weights zero."""

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__(in_units, units, device=device, dtype=dtype)
        nn.init.zeros_(self.weight)


class ShrunkInitMyLinear(MyLinear):
    """Initialized at 0.1 of the declared scale (a forgotten correction factor)."""

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__(in_units, units, device=device, dtype=dtype)
        with torch.no_grad():
            self.weight.mul_(0.1)


class IgnoresDtypeMyLinear(MyLinear):
    """Ignores the dtype factory kwarg: parameters are always float32."""

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__(in_units, units, device=device)


# -- dtype drift -----------------------------------------------------------------


class Float32CenteredLayer(CenteredLayer):
    """Computes in float32 whatever the input (upcast or downcast)."""

    def forward(self, X):
        X = X.float()
        return X - X.mean()


class HalfPrecisionCentered(CenteredLayer):
    """Computes in float16 and casts back: precision silently lost."""

    def forward(self, X):
        H = X.half()
        return (H - H.mean()).to(X.dtype)


# -- devices, in-place, batch, edge shapes ---------------------------------------


class CpuZerosCentered(CenteredLayer):
    """A tensor created on the CPU inside forward (breaks on any other device)."""

    def forward(self, X):
        return X - X.mean() + torch.zeros(X.shape, dtype=X.dtype)


class InPlaceCentered(CenteredLayer):
    """Subtracts the mean from the input in place."""

    def forward(self, X):
        return X.sub_(X.mean())


class BatchNormalizedMyLinear(MyLinear):
    """Couples the batch: subtracts the batch mean of the pre-activation."""

    def forward(self, X):
        linear = torch.matmul(X, self.weight) + self.bias
        if linear.dim() > 1:
            linear = linear - linear.mean(0)
        return F.relu(linear)


class MmMyLinear(MyLinear):
    """torch.mm where torch.matmul is needed: only 2-d inputs work."""

    def forward(self, X):
        return F.relu(torch.mm(X, self.weight) + self.bias)


class SqueezeMyLinear(MyLinear):
    """X.squeeze(0): a batch of one loses its batch dimension."""

    def forward(self, X):
        return F.relu(torch.matmul(X.squeeze(0), self.weight) + self.bias)


class UnbatchedNoBiasMyLinear(MyLinear):
    """A special case for unbatched inputs that forgets the bias."""

    def forward(self, X):
        if X.dim() == 1:
            return F.relu(torch.matmul(X, self.weight))
        return super().forward(X)


# -- state, layout, serialization, degenerate inputs, centering laws ----------------


class DriftingCentered(CenteredLayer):
    """Keeps a running mean updated on every call and subtracts it: the output drifts."""

    def __init__(self):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(()))

    def forward(self, X):
        if X.numel():
            self.running_mean = 0.9 * self.running_mean.to(X) + 0.1 * X.mean().detach()
        return X - self.running_mean.to(X)


class ViewMyLinear(MyLinear):
    """Flattens with .view(), which fails on non-contiguous inputs."""

    def forward(self, X):
        flat = X.view(-1, self.weight.shape[0])
        return F.relu(flat @ self.weight + self.bias).view(*X.shape[:-1], -1)


class FloatGainCentered(CenteredLayer):
    """A gain drawn at construction and kept as a Python float: state_dict misses it."""

    def __init__(self):
        super().__init__()
        self.gain = 1.0 + float(torch.rand(()))

    def forward(self, X):
        return (X - X.mean()) * self.gain


class SingleElementShortcutCentered(CenteredLayer):
    """Returns a one-element input unchanged (its mean is itself: the result must be 0)."""

    def forward(self, X):
        if X.numel() == 1:
            return X
        return X - X.mean()


class ClampedMeanCentered(CenteredLayer):
    """Clamps the mean "for stability": no longer invariant to a shift."""

    def forward(self, X):
        return X - X.mean().clamp(-10, 10)


class DoubledCentered(CenteredLayer):
    """Centers and scales by two: applying it twice is not applying it once."""

    def forward(self, X):
        return 2 * (X - X.mean())


# -- offsets, overflow, randomness -----------------------------------------------


class OffsetCentered(CenteredLayer):
    """Small constant offset after centering."""

    def forward(self, X):
        return X - X.mean() + 1e-3


class OffsetMyLinear(MyLinear):
    """Small constant offset added to the output."""

    def forward(self, X):
        return super().forward(X) + 1e-3


class SumOverflowCentered(CenteredLayer):
    """The mean as sum / count in the input's dtype: the float16 sum overflows."""

    def forward(self, X):
        return X - X.sum() / X.numel()


class DropoutMyLinear(MyLinear):
    """Dropout left on in train mode."""

    def forward(self, X):
        return F.dropout(super().forward(X), p=0.5, training=self.training)


# -- size-dependent code paths ------------------------------------------------------
# Each is right below its threshold: only inputs (or layers) past it show the bug.


class WideFeaturesMyLinear(MyLinear):
    """A blocked path past 16 input features whose tail loop stops one feature short."""

    def forward(self, X):
        n = self.weight.shape[0]
        if n <= 16:
            return super().forward(X)
        return F.relu(torch.matmul(X[..., : n - 1], self.weight[: n - 1]) + self.bias)


class ManyRowsMyLinear(MyLinear):
    """Rows processed in chunks of 16: chunks after the first forget the bias."""

    def forward(self, X):
        rows = X.reshape(-1, self.weight.shape[0])
        linear = rows @ self.weight
        first = linear[:16] + self.bias
        linear = torch.cat([first, linear[16:]]) if rows.shape[0] > 16 else first
        return F.relu(linear).reshape(*X.shape[:-1], -1)


class BlockMeanCentered(CenteredLayer):
    """Past 256 elements, the mean of 256-element block means: wrong when the last block is partial."""

    def forward(self, X):
        if X.numel() <= 256:
            return X - X.mean()
        blocks = X.reshape(-1).split(256)
        return X - torch.stack([block.mean() for block in blocks]).mean()


class ChunkCentered(CenteredLayer):
    """Past 4096 elements, each 4096-element chunk centered on its own mean."""

    def forward(self, X):
        if X.numel() <= 4096:
            return X - X.mean()
        chunks = [chunk - chunk.mean() for chunk in X.reshape(-1).split(4096)]
        return torch.cat(chunks).reshape(X.shape)


class IgnoresDeviceMyLinear(MyLinear):
    """Accepts device= and ignores it: parameters always on the CPU."""

    def __init__(self, in_units, units, *, device=None, dtype=None):
        super().__init__(in_units, units, dtype=dtype)


TEXTBOOK = Mutant(
    "detached tensors (.data)",
    dataclasses.replace(my_linear_spec, name="TextbookMyLinear", module=TextbookMyLinear),
    frozenset({"gradient_flow", "gradients_match_finite_differences", "second_derivatives_match_finite_differences"}),
)

MUTANTS = [
    TEXTBOOK,
    _mutant("detached tensors (.detach())", my_linear_with_builtin_spec, DetachedWeightBuiltin,
            "gradient_flow", "gradients_match_finite_differences", "second_derivatives_match_finite_differences"),
    _mutant("detached tensors (.detach())", centered_spec, DetachedMeanCentered,
            "gradients_match_finite_differences"),
    _mutant("detached tensors (.item())", centered_spec, ItemMeanCentered,
            "gradients_match_finite_differences", "runs_on_the_meta_device", "matches_torch_jit_trace"),
    _mutant("non-differentiable backward", my_linear_spec, CustomBackwardMyLinear,
            "second_derivatives_match_finite_differences"),
    _mutant("wrong reduction axis or scope", centered_spec, RowwiseCentered,
            "matches_reference"),
    _mutant("wrong reduction axis or scope", centered_spec, BatchwiseCentered,
            "matches_reference"),
    _mutant("missing activation", my_linear_spec, NoReluMyLinear,
            "nonnegative_output", "relu_is_exact", "matches_reference", "matches_equivalents"),
    _mutant("substituted activation", my_linear_spec, LeakyReluMyLinear,
            "nonnegative_output", "relu_is_exact", "matches_reference"),
    _mutant("extra activation", my_linear_with_builtin_spec, ExtraSigmoidBuiltin,
            "relu_is_exact", "matches_reference", "matches_equivalents"),
    _mutant("missing bias", my_linear_with_builtin_spec, NoBiasBuiltin,
            "matches_reference", "matches_equivalents", "relu_is_exact"),
    _mutant("transposed weights", my_linear_spec, TransposedMyLinear,
            "matches_reference", "keeps_dtype_device_and_declared_shape"),
    _mutant("frozen parameters", my_linear_spec, FrozenBiasMyLinear,
            "declares_its_parameters"),
    _mutant("unregistered parameters", my_linear_spec, UnregisteredBiasMyLinear,
            "tensors_are_registered", "declares_its_parameters"),
    _mutant("degenerate initialization", my_linear_spec, ZeroInitMyLinear,
            "initialized_from_declared_distribution"),
    _mutant("degenerate initialization", my_linear_spec, ShrunkInitMyLinear,
            "initialized_from_declared_distribution"),
    _mutant("dtype drift (factory kwargs ignored)", my_linear_spec, IgnoresDtypeMyLinear,
            "honours_factory_kwargs"),
    _mutant("dtype drift (up- or down-casting)", centered_spec, Float32CenteredLayer,
            "keeps_dtype_device_and_declared_shape"),
    _mutant("dtype drift (up- or down-casting)", centered_spec, HalfPrecisionCentered,
            "matches_reference"),
    _mutant("device hard-coding", centered_spec, CpuZerosCentered,
            "runs_on_the_meta_device"),
    _mutant("in-place modification of inputs", centered_spec, InPlaceCentered,
            "leaves_its_input_alone"),
    _mutant("batch coupling", my_linear_spec, BatchNormalizedMyLinear,
            "samples_are_independent", "matches_reference"),
    _mutant("special-casing of edge shapes (rank >= 3, unbatched)", my_linear_spec, MmMyLinear,
            "matches_reference", "samples_are_independent"),
    _mutant("special-casing of edge shapes (batch of one)", my_linear_spec, SqueezeMyLinear,
            "keeps_dtype_device_and_declared_shape", "samples_are_independent"),
    _mutant("special-casing of edge shapes (unbatched input)", my_linear_spec, UnbatchedNoBiasMyLinear,
            "matches_reference", "samples_are_independent"),
    _mutant("state changed by forward", centered_spec, DriftingCentered,
            "is_deterministic", "matches_reference"),
    _mutant("layout assumptions", my_linear_spec, ViewMyLinear,
            "ignores_memory_layout"),
    _mutant("state outside state_dict", centered_spec, FloatGainCentered,
            "survives_serialization", "matches_reference"),
    _mutant("special-casing of edge shapes (single element)", centered_spec, SingleElementShortcutCentered,
            "handles_degenerate_inputs"),
    _mutant("broken algebraic laws", centered_spec, ClampedMeanCentered,
            "centering_ignores_a_shift", "matches_reference"),
    _mutant("broken algebraic laws", centered_spec, DoubledCentered,
            "centering_is_idempotent", "matches_reference"),
    _mutant("small constant offsets", centered_spec, OffsetCentered,
            "matches_reference", "zero_mean_after_centering"),
    _mutant("small constant offsets", my_linear_spec, OffsetMyLinear,
            "matches_reference", "matches_equivalents", "relu_is_exact"),
    _mutant("overflow in low precision", centered_spec, SumOverflowCentered,
            "finite_output"),
    _mutant("randomness left on in train mode", my_linear_spec, DropoutMyLinear,
            "train_and_eval_agree", "matches_reference"),
    _mutant("device hard-coding (factory kwargs ignored)", my_linear_spec, IgnoresDeviceMyLinear,
            "honours_factory_kwargs", "runs_on_the_meta_device"),
    _mutant("size-dependent code paths", my_linear_spec, WideFeaturesMyLinear,
            "matches_reference"),
    _mutant("size-dependent code paths", my_linear_spec, ManyRowsMyLinear,
            "matches_reference", "samples_are_independent"),
    _mutant("size-dependent code paths", centered_spec, BlockMeanCentered,
            "matches_reference"),
    _mutant("size-dependent code paths", centered_spec, ChunkCentered,
            "matches_reference"),
]


def markdown_table() -> str:
    """The README's table: bug class -> the properties that catch it (verified by tests),
    the lesson's mutants and the gallery's (tests/gallery_mutants.py)."""
    rows: dict[str, set[str]] = {}
    examples: dict[str, list[str]] = {}
    for mutant in [*MUTANTS, *(Mutant(bug, spec, frozenset(caught)) for bug, spec, caught in GALLERY_MUTANTS)]:
        rows.setdefault(mutant.bug_class, set()).update(mutant.caught_by)
        examples.setdefault(mutant.bug_class, []).append(mutant.spec.name)
    lines = ["| bug class | mutants | caught by |", "|---|---|---|"]
    for bug_class, props in rows.items():
        caught = ", ".join(f"`{p}`" for p in sorted(props))
        lines.append(f"| {bug_class} | {', '.join(examples[bug_class])} | {caught} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
