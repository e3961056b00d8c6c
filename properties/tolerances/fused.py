"""Fused composites (softmax, normalizations): evaluated in the accumulation
dtype, as torch's kernels do, and rounded once to the working dtype.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from properties.tolerances.elementwise import divide, exp, log, rsqrt
from properties.tolerances.reductions import amax, mean, sum, var
from properties.tolerances.rounding import Bounded, cast, compute_dtype, unit_roundoff


def _in_compute_dtype(a: Bounded) -> Bounded:
    return dataclasses.replace(a, dtype=compute_dtype(a.dtype))


def softmax(input: Bounded, dim: int, *, dtype: torch.dtype | None = None) -> Bounded:
    """``F.softmax(input, dim, dtype=dtype)`` = ``exp(a - max) / sum(exp(a - max))``.

    torch's kernels compute it in the accumulation dtype and round once;
    bounded by composing the steps (Blanchard, Higham & Mary 2021, sec. 4),
    with one extra rounding for kernels that multiply by ``1/sum``.  ``dim`` is
    required (torch's implicit choice is deprecated); ``dtype`` casts the input
    first, as torch does.
    """
    input = input if dtype is None else cast(input, dtype)
    x = _in_compute_dtype(input)
    shifted = exp(x - amax(x, dim, keepdim=True))
    out = divide(shifted, sum(shifted, dim, keepdim=True))
    out = out._rounded(out.value, out.error, out.representable)  # times 1/sum: one more rounding
    return cast(out, input.dtype)


def log_softmax(input: Bounded, dim: int, *, dtype: torch.dtype | None = None) -> Bounded:
    """``F.log_softmax(input, dim, dtype=dtype)`` = ``(a - max) - log(sum(exp(a - max)))`` (BHM 2021, sec. 4).

    Composed with every step rounded in the working dtype: torch's CPU
    bfloat16 kernel rounds the sum before the log (log_softmax of
    [-12.8, 1.86, 17.9, 6.78] gives exactly 0 at the maximum, not -1.5e-5).
    ``dim`` and ``dtype`` as in ``softmax``.
    """
    input = input if dtype is None else cast(input, dtype)
    shifted = input - amax(input, dim, keepdim=True)
    return shifted - log(sum(exp(shifted), dim, keepdim=True))


def _normalized_dims(a: Bounded, normalized_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(normalized_shape) if not isinstance(normalized_shape, int) else (normalized_shape,)
    if tuple(a.value.shape[a.value.dim() - len(shape):]) != shape:
        raise ValueError(f"normalized_shape {shape} is not the trailing shape of {tuple(a.value.shape)}")
    return tuple(range(a.value.dim() - len(shape), a.value.dim()))


def layer_norm(input: Bounded, normalized_shape: Sequence[int], weight: Bounded | None = None,
               bias: Bounded | None = None, eps: float = 1e-5) -> Bounded:
    """``F.layer_norm``: ``(a - mean) / sqrt(var + eps) * weight + bias`` (biased variance).

    Composed from ``mean``, ``var``, ``rsqrt`` in the accumulation dtype and
    rounded once.  Kernels fold it into ``a * rstd - mean * rstd``: that
    rounds ``|a| rstd`` and ``|mean| rstd`` separately, one ``u`` each, added.
    """
    dims = _normalized_dims(input, normalized_shape)
    x = _in_compute_dtype(input)
    centre = mean(x, dims, keepdim=True)
    rstd = rsqrt(var(x, dims, correction=0, keepdim=True) + eps)
    out = (x - centre) * rstd
    folded = unit_roundoff(x.dtype) * (x.value.abs() + centre.value.abs()) * (rstd.value + rstd.error)
    out = dataclasses.replace(out, error=out.error + folded)
    if weight is not None:
        out = out * _in_compute_dtype(weight)
    if bias is not None:
        out = out + _in_compute_dtype(bias)
    out = dataclasses.replace(out, representable=out.representable & _welford_fits(x, dims, out.value))
    return cast(out, input.dtype)


def rms_norm(input: Bounded, normalized_shape: Sequence[int], weight: Bounded | None = None,
             eps: float | None = None) -> Bounded:
    """``F.rms_norm``: ``a / sqrt(mean(a**2) + eps) * weight``.

    ``eps=None`` is the ``finfo(...).eps`` of the dtype torch computes in
    (float32 for float16/bfloat16 inputs: torch upcasts before choosing it).

    The normalization is composed in the accumulation dtype and rounded once
    (torch upcasts too); torch multiplies by ``weight`` after that rounding, in
    the working dtype (a fused kernel rounds less: within this bound).
    """
    dims = _normalized_dims(input, normalized_shape)
    x = _in_compute_dtype(input)
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    out = cast(x * rsqrt(mean(x**2, dims, keepdim=True) + eps), input.dtype)
    return out if weight is None else out * weight


def _welford_fits(x: Bounded, dims: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Where the statistics over ``dims`` cannot overflow ``x``'s dtype (see ``layer_norm``)."""
    if not x.value.numel() or not dims:
        return torch.ones_like(like, dtype=torch.bool)
    # Welford's (CPU) partial terms (x - mean)(x - mean') reach 4 max|x|^2 each:
    # no claim where n of them may overflow the compute dtype.
    n = math.prod(x.value.shape[d] for d in dims)
    peak = x.value.abs().amax(dim=dims, keepdim=True)
    return (4 * n * peak.square() <= torch.finfo(x.dtype).max).expand_as(like)


def batch_norm(input: Bounded, running_mean: Bounded | None = None, running_var: Bounded | None = None,
               weight: Bounded | None = None, bias: Bounded | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Bounded:
    """``F.batch_norm`` over channel dim 1: ``(a - mean) / sqrt(var + eps) * weight + bias``, with
    the batch's statistics over every other dim (biased variance) when ``training``, else the
    running ones.  ``momentum`` only updates the running statistics, which torch does in place
    and no output depends on: taken for torch's argument order, unused.

    torch's CPU kernel folds it into ``a * alpha + beta`` per channel (``alpha = weight /
    sqrt(var + eps)``, ``beta = bias - mean * alpha``) in the accumulation dtype and rounds once;
    in training it first stores the batch mean and ``1/sqrt(var + eps)`` in the parameters'
    dtype (``weight``'s, else ``a``'s): in bfloat16, ``u |mean| alpha`` is hundreds of ulps of an
    output whose mean dwarfs its spread.
    """
    if input.value.dim() < 2:
        raise ValueError(f"batch_norm: input of shape {tuple(input.value.shape)} has no channel dim 1 (N, C, ...)")
    x = _in_compute_dtype(input)
    per_channel = (1, -1) + (1,) * (input.value.dim() - 2)

    def channel(p: Bounded) -> Bounded:
        return _in_compute_dtype(p).map(lambda t: t.reshape(per_channel))

    if training:
        dims = (0, *range(2, input.value.dim()))
        stored = weight.dtype if weight is not None else input.dtype
        centre = mean(x, dims, keepdim=True)
        rstd = rsqrt(var(x, dims, correction=0, keepdim=True) + eps)
        # Stored in the parameters' dtype, read back exactly (bfloat16 -> float32 widens).
        centre, rstd = (dataclasses.replace(cast(t, stored), dtype=x.dtype) for t in (centre, rstd))
        fits = _welford_fits(x, dims, x.value)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm(training=False) needs running_mean and running_var")
        centre, rstd = channel(running_mean), rsqrt(channel(running_var) + eps)
        fits = torch.ones_like(x.value, dtype=torch.bool)
    alpha = rstd if weight is None else rstd * channel(weight)
    out = (x - centre) * alpha
    # a * alpha and mean * alpha round separately (as in layer_norm's fold).
    folded = unit_roundoff(x.dtype) * (x.value.abs() + centre.value.abs()) * (alpha.value.abs() + alpha.error)
    out = dataclasses.replace(out, error=out.error + folded, representable=out.representable & fits)
    if bias is not None:
        out = out + channel(bias)
    return cast(out, input.dtype)


def instance_norm(input: Bounded, running_mean: Bounded | None = None, running_var: Bounded | None = None,
                  weight: Bounded | None = None, bias: Bounded | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Bounded:
    """``F.instance_norm``: each sample's own statistics per channel (the running ones where
    ``use_input_stats=False``).  torch computes it as ``batch_norm`` of ``a`` viewed as
    ``(1, N * C, ...)``, ``weight``, ``bias`` and the running statistics repeated N times;
    ``momentum`` as in ``batch_norm`` (unused)."""
    if input.value.dim() < 3:
        raise ValueError(f"instance_norm: input of shape {tuple(input.value.shape)} is not (N, C, L, ...)")
    if not use_input_stats and (running_mean is None or running_var is None):
        raise ValueError("instance_norm(use_input_stats=False) needs running_mean and running_var")
    n, c = input.value.shape[:2]
    flat = input.map(lambda t: t.reshape(1, n * c, *t.shape[2:]))
    repeated = (None if p is None else p.map(lambda t: t.repeat(n)) for p in (running_mean, running_var, weight, bias))
    out = batch_norm(flat, *repeated, training=use_input_stats, eps=eps)
    return out.map(lambda t: t.reshape(input.value.shape))
