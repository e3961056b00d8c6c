"""Realistic broken versions of the gallery's layer families, checked the way a user would.

Each mutant is a user's own layer with one planted bug, wrapped in its family's
gallery spec (``gallery.rms_norm(EpsOutsideSqrtRMSNorm)``), and the properties
that catch it.  ``tests/test_gallery_mutants.py`` asserts that each listed
property's own assertion fails on it under the ``ci`` profile (never a crash);
``python -m tests.mutants`` puts them in the README's bug table.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from properties import gallery

# -- normalization ---------------------------------------------------------------------------


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 in float32, as torch's own kernels compute them (float64 stays)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class EpsOutsideSqrtRMSNorm(nn.RMSNorm):
    """x / (sqrt(mean(x**2)) + eps): eps added outside the square root."""

    def forward(self, x):
        h = _upcast(x)
        out = (h / (h.pow(2).mean(-1, keepdim=True).sqrt() + self.eps)).to(x.dtype)
        return out if self.weight is None else out * self.weight


class NoUpcastRMSNorm(nn.RMSNorm):
    """Computed in the input's own dtype: float16's x**2 overflows, bfloat16 sums lose digits."""

    def forward(self, x):
        out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return out if self.weight is None else out * self.weight


class UnbiasedLayerNorm(nn.LayerNorm):
    """Normalizes by the unbiased variance (n - 1), as torch.var does by default."""

    def forward(self, x):
        h = _upcast(x)
        out = ((h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, keepdim=True) + self.eps)).to(x.dtype)
        return out if self.weight is None else out * self.weight + (0 if self.bias is None else self.bias)


class WholeTensorLayerNorm(nn.LayerNorm):
    """Normalizes over every dim (batch included) instead of the last one."""

    def forward(self, x):
        h = _upcast(x)
        out = ((h - h.mean()) / torch.sqrt(h.var(unbiased=False) + self.eps)).to(x.dtype)
        return out if self.weight is None else out * self.weight + (0 if self.bias is None else self.bias)


class UnbiasedBatchNorm(nn.BatchNorm1d):
    """Normalizes a training batch by its unbiased variance (n - 1)."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        h = _upcast(x)
        out = ((h - h.mean(0)) / torch.sqrt(h.var(0) + self.eps)).to(x.dtype)
        return out if self.weight is None else out * self.weight + self.bias


class BatchStatisticsInEvalBatchNorm(nn.BatchNorm1d):
    """Normalizes with the batch's statistics in eval mode too: the running ones are never used."""

    def forward(self, x):
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)


class ZeroWeightLayerNorm(nn.LayerNorm):
    """Its weight initialized to zeros where ones are meant (the output starts at the bias)."""

    def reset_parameters(self):
        super().reset_parameters()
        if self.weight is not None:
            nn.init.zeros_(self.weight)


class InPlaceLayerNorm(nn.LayerNorm):
    """Centers the caller's tensor in place (x -= mean, as a residual written x += ... would)."""

    def forward(self, x):
        x -= x.mean(-1, keepdim=True)
        return super().forward(x)


# -- softmax ---------------------------------------------------------------------------------


class UnshiftedSoftmax(nn.Softmax):
    """exp(x) / sum(exp(x)) without subtracting the max first: overflows from x ~ 89 in float32."""

    def forward(self, x):
        e = _upcast(x).exp()
        return (e / e.sum(self.dim, keepdim=True)).to(x.dtype)


class WrongAxisSoftmax(nn.Softmax):
    """Softmax over the first axis instead of the last."""

    def forward(self, x):
        return torch.softmax(x, 0)


class UnshiftedLogSoftmax(nn.LogSoftmax):
    """x - log(sum(exp(x))): a logsumexp without the max shift."""

    def forward(self, x):
        h = _upcast(x)
        return (h - h.exp().sum(self.dim, keepdim=True).log()).to(x.dtype)


# -- activations -------------------------------------------------------------------------------


class ReluForSiLU(nn.SiLU):
    """relu substituted for silu."""

    def forward(self, x):
        return F.relu(x)


class GateDroppedSiLU(nn.SiLU):
    """x * sigmoid(x) with the gate sigmoid(x) dropped: the identity."""

    def forward(self, x):
        return x.clone()


class InPlaceSiLU(nn.SiLU):
    """x.mul_(sigmoid(x)): the right numbers, written over the caller's tensor."""

    def forward(self, x):
        return x.mul_(torch.sigmoid(x))


class TanhForExactGELU(nn.GELU):
    """The tanh approximation where the exact (erf) GELU is declared."""

    def forward(self, x):
        return F.gelu(x, approximate="tanh")


class LinearWithHiddenActivation(nn.Linear):
    """A ReLU left inside a layer declared linear."""

    def forward(self, x):
        return F.relu(super().forward(x))


# -- attention -----------------------------------------------------------------------------------


def _masked_attention(x: torch.Tensor, scale: float, diagonal: int) -> torch.Tensor:
    h = _upcast(x)
    scores = h @ h.mT * scale
    length = x.shape[-2]
    allowed = torch.ones(length, length, dtype=torch.bool, device=x.device).tril(diagonal)
    return (torch.softmax(scores.masked_fill(~allowed, -math.inf), -1) @ h).to(x.dtype)


class UnscaledAttention(gallery.SelfAttention):
    """Causal attention without the 1/sqrt(d) scale of the scores."""

    def forward(self, x):
        return _masked_attention(x, 1.0, 0)


class PeekingCausalAttention(gallery.SelfAttention):
    """The causal mask off by one: each position also sees the next."""

    def forward(self, x):
        return _masked_attention(x, 1 / math.sqrt(x.shape[-1]), 1)


class PositionBiasedAttention(gallery.SelfAttention):
    """Attention that adds each key's position to its score: no longer permutation equivariant."""

    def forward(self, x):
        positions = torch.arange(x.shape[-2], device=x.device, dtype=x.dtype)
        return F.scaled_dot_product_attention(x, x, x, attn_mask=positions.expand(x.shape[-2], x.shape[-2]))


# -- dropout -------------------------------------------------------------------------------------


class UnscaledDropout(nn.Dropout):
    """Drops with probability p but forgets to scale the kept elements by 1 / (1 - p)."""

    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand_like(x) >= self.p)


class KeepsWithProbabilityP(nn.Dropout):
    """Keeps each element with probability p (the mask's comparison the wrong way round)."""

    def forward(self, x):
        if not self.training or self.p in (0.0, 1.0):
            return super().forward(x)
        return x * (torch.rand_like(x) < self.p) / (1 - self.p)


class AlwaysOnDropout(nn.Dropout):
    """Drops in eval mode too (F.dropout(..., training=True) hard-coded)."""

    def forward(self, x):
        return F.dropout(x, self.p, training=True)


class OwnGeneratorDropout(nn.Dropout):
    """Draws its mask from a private generator: torch's seed does not reproduce it."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__(p, inplace)
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x):
        if not self.training or self.p in (0.0, 1.0):
            return super().forward(x)
        keep = torch.rand(x.shape, generator=self.generator).to(x.device) >= self.p
        return x * keep / (1 - self.p)


GALLERY_MUTANTS = [
    ("normalization: epsilon outside the square root, unbiased variance, wrong dims, no float32 upcast, batch statistics in eval", gallery.rms_norm(EpsOutsideSqrtRMSNorm, name="EpsOutsideSqrtRMSNorm"),
     {"matches_reference", "matches_equivalents", "invariant_to_shift_and_scale"}),
    ("normalization: epsilon outside the square root, unbiased variance, wrong dims, no float32 upcast, batch statistics in eval", gallery.rms_norm(NoUpcastRMSNorm, name="NoUpcastRMSNorm"),
     {"matches_reference", "invariant_to_shift_and_scale"}),
    ("normalization: epsilon outside the square root, unbiased variance, wrong dims, no float32 upcast, batch statistics in eval", gallery.layer_norm(UnbiasedLayerNorm, name="UnbiasedLayerNorm"),
     {"matches_reference", "matches_equivalents", "invariant_to_shift_and_scale"}),
    ("normalization: epsilon outside the square root, unbiased variance, wrong dims, no float32 upcast, batch statistics in eval", gallery.layer_norm(WholeTensorLayerNorm, name="WholeTensorLayerNorm"),
     {"matches_reference", "matches_equivalents", "samples_are_independent", "invariant_to_shift_and_scale"}),
    ("normalization: epsilon outside the square root, unbiased variance, wrong dims, no float32 upcast, batch statistics in eval", gallery.batch_norm1d(UnbiasedBatchNorm, name="UnbiasedBatchNorm"),
     {"matches_reference", "matches_equivalents"}),
    ("normalization: epsilon outside the square root, unbiased variance, wrong dims, no float32 upcast, batch statistics in eval", gallery.batch_norm1d(BatchStatisticsInEvalBatchNorm, name="BatchStatisticsInEvalBatchNorm"),
     {"matches_reference", "matches_equivalents"}),
    ("softmax/logsumexp: the wrong axis, no max shift", gallery.softmax(WrongAxisSoftmax, name="WrongAxisSoftmax"),
     {"matches_reference", "matches_equivalents", "samples_are_independent", "rows_sum_to_one"}),
    ("softmax/logsumexp: the wrong axis, no max shift", gallery.softmax(UnshiftedSoftmax, name="UnshiftedSoftmax"),
     {"matches_reference", "rows_sum_to_one", "invariant_to_shift_and_scale", "finite_output"}),
    ("softmax/logsumexp: the wrong axis, no max shift", gallery.log_softmax(UnshiftedLogSoftmax, name="UnshiftedLogSoftmax"),
     {"matches_reference", "exp_rows_sum_to_one", "invariant_to_shift_and_scale", "finite_output"}),
    ("substituted activation", gallery.silu(ReluForSiLU, name="ReluForSiLU"),
     {"matches_reference", "matches_equivalents"}),
    ("substituted activation", gallery.gelu(TanhForExactGELU, name="TanhForExactGELU"),
     {"matches_reference", "matches_equivalents"}),
    ("a dropped gate", gallery.silu(GateDroppedSiLU, name="GateDroppedSiLU"),
     {"matches_reference", "matches_equivalents"}),
    ("in-place modification of inputs", gallery.silu(InPlaceSiLU, name="InPlaceSiLU"),
     {"leaves_its_input_alone"}),
    ("in-place modification of inputs", gallery.layer_norm(InPlaceLayerNorm, name="InPlaceLayerNorm"),
     {"leaves_its_input_alone"}),
    ("attention: no 1/sqrt(d), a causal mask off by one", gallery.scaled_dot_product_attention(UnscaledAttention, name="UnscaledAttention"),
     {"matches_reference"}),
    ("attention: no 1/sqrt(d), a causal mask off by one", gallery.scaled_dot_product_attention(PeekingCausalAttention, name="PeekingCausalAttention"),
     {"matches_reference", "causal_masking"}),
    ("broken family laws (linearity, equivariance)",
     gallery.linear(LinearWithHiddenActivation, name="LinearWithHiddenActivation"),
     {"matches_reference", "linear_in_its_input"}),
    ("broken family laws (linearity, equivariance)",
     gallery.scaled_dot_product_attention(PositionBiasedAttention, name="PositionBiasedAttention", is_causal=False),
     {"matches_reference", "permutation_equivariant"}),
    ("wrong initialization constants (zeros for ones)", gallery.layer_norm(ZeroWeightLayerNorm, name="ZeroWeightLayerNorm"),
     {"initialized_from_declared_distribution"}),
    ("dropout: rescaling, keep rate, eval mode or RNG wrong", gallery.dropout(UnscaledDropout, name="UnscaledDropout"),
     {"dropout_preserves_the_expectation"}),
    ("dropout: rescaling, keep rate, eval mode or RNG wrong", gallery.dropout(KeepsWithProbabilityP, name="KeepsWithProbabilityP"),
     {"dropout_preserves_the_expectation"}),
    ("dropout: rescaling, keep rate, eval mode or RNG wrong", gallery.dropout(AlwaysOnDropout, name="AlwaysOnDropout"),
     {"identity_in_eval_mode"}),
    ("dropout: rescaling, keep rate, eval mode or RNG wrong", gallery.dropout(OwnGeneratorDropout, name="OwnGeneratorDropout"),
     {"same_seed_same_mask"}),
]
