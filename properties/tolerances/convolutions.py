"""Convolutions and their transposes (each output a dot product, as in
products.py) and embedding lookups (exact).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from properties.tolerances.products import flushable, product_error
from properties.tolerances.rounding import (
    Bounded,
    accumulated,
    accumulation_dtype,
    device_of,
    fits_in,
    gamma,
    lost_to_underflow,
)


def _conv(conv: Callable[..., torch.Tensor], terms: int, x: Bounded, weight: Bounded, bias: Bounded | None,
          *, working_terms: int = 0, **options) -> Bounded:
    """``conv(x, weight, bias, **options)``, each output a dot product of at most ``terms`` products,
    of which partial sums over ``working_terms`` are added in the working dtype."""
    x, weight = flushable(x), flushable(weight)
    n = terms
    magnitude = conv(x.value.abs(), weight.value.abs(), **options)
    value = conv(x.value, weight.value, **options)
    inherited = conv(x.error, weight.value.abs() + weight.error, **options) + conv(x.value.abs(), weight.error, **options)
    bad = conv((~x.representable).double(), torch.ones_like(weight.value), **options)
    representable = (bad == 0) & bool(weight.representable.all())
    shape = (-1,) + (1,) * (weight.value.dim() - 2)
    if bias is not None:
        magnitude = magnitude + bias.value.abs().reshape(shape)
        value = value + bias.value.reshape(shape)
        inherited = inherited + bias.error.reshape(shape)
        representable = representable & bool(bias.representable.all())
        n += 1
    device = device_of(x, weight)
    error = product_error(magnitude, n, x.dtype, device, "conv") + inherited + lost_to_underflow(2 * n, x.dtype)
    if working_terms and accumulation_dtype(x.dtype) != x.dtype:
        error = error + gamma(working_terms, x.dtype) * magnitude
    representable = representable & fits_in(magnitude, error, x.dtype)
    return accumulated(value, error, representable, magnitude, x.dtype, device)


def conv1d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0, dilation=1,
           groups=1) -> Bounded:
    """``F.conv1d``: each output is a dot product of length ``C_in/groups * kernel`` (+1 with the bias).

    Bound ``gamma(n) * conv(|x|, |weight|)`` (Higham (3.5)); TF32 on CUDA when cuDNN allows it.
    """
    terms = math.prod(weight.value.shape[1:])
    return _conv(F.conv1d, terms, input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv2d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0, dilation=1,
           groups=1) -> Bounded:
    """``F.conv2d``: as ``conv1d``, with ``n = C_in/groups * kh * kw``."""
    terms = math.prod(weight.value.shape[1:])
    return _conv(F.conv2d, terms, input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv3d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0, dilation=1,
           groups=1) -> Bounded:
    """``F.conv3d``: as ``conv1d``, with ``n = C_in/groups * kd * kh * kw``."""
    terms = math.prod(weight.value.shape[1:])
    return _conv(F.conv3d, terms, input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _conv_transpose(conv: Callable[..., torch.Tensor], x: Bounded, weight: Bounded, bias: Bounded | None,
                    groups: int, **options) -> Bounded:
    # weight is (C_in, C_out/groups, *kernel): an output sums at most C_in/groups * kernel products.
    # torch's CPU float16/bfloat16 kernels round each tap's column (a dot product over C_in) to the
    # working dtype and add the taps there (col2im): fp16 conv_transpose1d was 3.7x a float32-accumulated bound.
    taps = math.prod(weight.value.shape[2:])
    return _conv(conv, weight.value.shape[0] // groups * taps, x, weight, bias, working_terms=taps, groups=groups,
                 **options)


def conv_transpose1d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0,
                     output_padding=0, groups=1, dilation=1) -> Bounded:
    """``F.conv_transpose1d`` (``weight`` of shape ``(C_in, C_out/groups, k)``): each output sums
    at most ``C_in/groups * k`` products, as ``conv1d``; in float16/bfloat16 the ``k`` taps are
    added in the working dtype (``gamma_work(k) * conv_transpose(|x|, |w|)``)."""
    return _conv_transpose(F.conv_transpose1d, input, weight, bias, groups, stride=stride, padding=padding,
                           output_padding=output_padding, dilation=dilation)


def conv_transpose2d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0,
                     output_padding=0, groups=1, dilation=1) -> Bounded:
    """``F.conv_transpose2d``: as ``conv_transpose1d``, with ``kh * kw`` taps."""
    return _conv_transpose(F.conv_transpose2d, input, weight, bias, groups, stride=stride, padding=padding,
                           output_padding=output_padding, dilation=dilation)


def conv_transpose3d(input: Bounded, weight: Bounded, bias: Bounded | None = None, stride=1, padding=0,
                     output_padding=0, groups=1, dilation=1) -> Bounded:
    """``F.conv_transpose3d``: as ``conv_transpose1d``, with ``kd * kh * kw`` taps."""
    return _conv_transpose(F.conv_transpose3d, input, weight, bias, groups, stride=stride, padding=padding,
                           output_padding=output_padding, dilation=dilation)


def embedding(input: torch.Tensor, weight: Bounded) -> Bounded:
    """``F.embedding(input, weight)``: the rows ``input`` indexes, exactly.

    ``padding_idx`` changes only gradients; for ``max_norm`` renormalize the
    rows first (``tol.where`` on their norms) and look those up.
    """
    input = input.detach().cpu()
    return weight.map(lambda t: t[input])
