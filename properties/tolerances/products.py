"""Products: matmul, linear, einsum and attention, each output a dot product
(Higham (3.5)) accumulated in ``accumulation_dtype``, with TF32 input rounding
on CUDA and subnormal operands a kernel may flush to zero.
"""

from __future__ import annotations

import builtins
import dataclasses
import math

import torch

from properties.tolerances.fused import softmax
from properties.tolerances.rounding import (
    Bounded,
    accumulated,
    accumulation_dtype,
    compute_dtype,
    device_of,
    fits_in,
    gamma_both,
    lost_to_underflow,
    register_operators,
    unit_roundoff,
)


def flushable(a: Bounded) -> Bounded:
    """``a`` with the magnitude of its elements subnormal in the accumulation dtype added to their error.

    Product kernels may read such operands as zero (oneDNN's CPU bfloat16 conv2d
    does: 9.3e-39 * 4.6e17 gave 0, exact 4.3e-21), each costing ``|x| |w|``.
    float16's subnormals are normal in float32: no allowance there.
    """
    subnormal = a.value.abs() < torch.finfo(accumulation_dtype(a.dtype)).tiny
    return dataclasses.replace(a, error=a.error + torch.where(subnormal, a.value.abs(), 0.0))  # no inf * 0 = NaN


def product_error(magnitude: torch.Tensor, n: int, dtype: torch.dtype, device: str, kind: str) -> torch.Tensor:
    """Higham (3.5): ``gamma(n) |x|^T |y|`` in the accumulation dtype, plus TF32 input rounding on CUDA."""
    error = gamma_both(n, accumulation_dtype(dtype)) * magnitude
    if device == "cuda" and dtype == torch.float32:
        u_inputs = _reduced_float32_inputs(kind)
        error = error + (2 * u_inputs + u_inputs**2) * magnitude  # both factors rounded
    return error


def _reduced_float32_inputs(kind: str) -> float:
    """The unit roundoff CUDA float32 products round their inputs to (0: none)."""
    if kind == "conv":
        return 2.0**-11 if torch.backends.cudnn.allow_tf32 else 0.0
    precision = torch.get_float32_matmul_precision()
    return {"highest": 0.0, "high": 2.0**-11, "medium": 2.0**-8}.get(precision, 2.0**-8)


def matmul(input: Bounded, other: Bounded) -> Bounded:
    """``torch.matmul(a, b)`` (batched, broadcasting, 1-D as torch).

    Each output is a dot product of length ``n``: within ``gamma(n) |a| @ |b|``
    (Higham (3.5)) accumulated in ``accumulation_dtype``, then one rounding;
    inherited ``a.error @ (|b| + b.error) + |a| @ b.error``.
    """
    input, other = flushable(input), flushable(other)
    n = input.value.shape[-1]
    magnitude = input.value.abs() @ other.value.abs()
    device = device_of(input, other)
    error = product_error(magnitude, n, input.dtype, device, "matmul")
    error = error + input.error @ (other.value.abs() + other.error) + input.value.abs() @ other.error
    error = error + lost_to_underflow(2 * n, input.dtype)
    bad = (~input.representable).double() @ torch.ones_like(other.value)
    bad = bad + torch.ones_like(input.value) @ (~other.representable).double()
    # Partial sums never exceed the magnitude; a layer may round the product
    # to the working dtype before using it, so it must fit there too.
    representable = (bad == 0) & fits_in(magnitude, error, input.dtype)
    return accumulated(input.value @ other.value, error, representable, magnitude, input.dtype, device)


def scaled_dot_product_attention(query: Bounded, key: Bounded, value: Bounded, attn_mask: torch.Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, *, scale: float | None = None,
                                 enable_gqa: bool = False) -> Bounded:
    """``F.scaled_dot_product_attention(query, key, value, scale=..., enable_gqa=...)``.

    ``softmax(query @ key.mT * scale) @ value`` composed from the operations
    above, plus what torch's kernels do differently: the math backend scales
    query and key by ``sqrt(scale)`` each (two more roundings of
    ``|q| @ |k|.mT * scale``); flash kernels accumulate ``exp(s - max) @ value``
    and divide by the sum last, so those partial sums must fit too (else no claim).

    ``is_causal``: query ``i`` sees keys ``0..i`` (torch's top-left alignment),
    bounded row by row on those keys alone: a masked score's ``exp(-inf) = 0``
    is exact, while a ``-inf`` leaf would mark the row as overflowing.
    ``attn_mask`` and ``dropout_p`` are taken in torch's order but not modelled.
    """
    if attn_mask is not None or dropout_p != 0:
        raise ValueError(
            "scaled_dot_product_attention: attn_mask and dropout_p are not modelled; check dropout in eval "
            "mode (dropout_p=0), pass is_causal=True for a causal mask, and bound another mask query by "
            "query on the keys it sees (slices, not -inf scores)"
        )
    if enable_gqa and key.shape[-3] != query.shape[-3]:  # grouped-query attention: torch repeats key/value heads
        repeats = query.shape[-3] // key.shape[-3]
        key, value = (t.map(lambda v: v.repeat_interleave(repeats, dim=-3)) for t in (key, value))
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    if is_causal and query.shape[-2] and key.shape[-2]:
        seen = [builtins.min(i + 1, key.shape[-2]) for i in range(query.shape[-2])]
        rows = [scaled_dot_product_attention(query[..., i : i + 1, :], key[..., :s, :], value[..., :s, :], scale=scale)
                for i, s in enumerate(seen)]
        return Bounded(*(torch.cat([getattr(r, f) for r in rows], -2) for f in ("value", "error", "representable")),
                       rows[0].dtype, rows[0].device)
    scores = query @ key.mT * scale
    compute = compute_dtype(query.dtype)
    rescaled = 2 * unit_roundoff(compute) * (query.value.abs() @ key.value.abs().mT) * scale
    scores = dataclasses.replace(scores, error=scores.error + rescaled)
    out = softmax(scores, -1) @ value
    weights = (scores.value - scores.value.amax(-1, keepdim=True)).exp() if scores.value.numel() else scores.value
    unnormalized = weights @ value.value.abs()
    return dataclasses.replace(out, representable=out.representable & (unnormalized <= torch.finfo(query.dtype).max))


def einsum(equation: str, *operands: Bounded) -> Bounded:
    """``torch.einsum(equation, *operands)``: a sum of products of ``k`` factors.

    Each output sums ``n`` products: within ``gamma(n + k - 2) einsum(|operands|)``
    (Higham (3.5) with ``k - 1`` roundings per product); inherited by the
    telescoping sum ``sum_i einsum(|x_1| + e_1, ..., e_i, |x_{i+1}|, ...)``.
    """
    operands = tuple(flushable(o) for o in operands)
    values = [o.value for o in operands]
    value = torch.einsum(equation, *values)
    magnitude = torch.einsum(equation, *[v.abs() for v in values])
    sizes: dict[str, int] = {}
    for term, v in zip(equation.split("->")[0].split(","), values):
        sizes.update(zip(term.strip().replace("...", ""), v.shape[v.dim() - len(term.strip().replace("...", "")):]))
    output = equation.split("->")[1] if "->" in equation else ""
    n = math.prod(size for letter, size in sizes.items() if letter not in output)
    device = device_of(*operands)
    error = product_error(magnitude, n + len(operands) - 2, operands[0].dtype, device, "matmul")
    error = error + lost_to_underflow(2 * n, operands[0].dtype)
    for i, o in enumerate(operands):
        factors = [p.value.abs() + p.error for p in operands[:i]] + [o.error] + [p.value.abs() for p in operands[i + 1:]]
        error = error + torch.einsum(equation, *factors)
    bad = torch.zeros_like(value)  # how many unrepresentable inputs each output depends on
    for i, o in enumerate(operands):
        factors = [torch.ones_like(p.value) for p in operands]
        factors[i] = (~o.representable).double()
        bad = bad + torch.einsum(equation, *factors)
    representable = (bad == 0) & fits_in(magnitude, error, operands[0].dtype)
    return accumulated(value, error, representable, magnitude, operands[0].dtype, device)


def linear(input: Bounded, weight: Bounded, bias: Bounded | None = None) -> Bounded:
    """``F.linear(input, weight, bias)`` = ``input @ weight.mT + bias``, ``weight`` of shape
    ``(out_features, in_features)`` as ``nn.Linear.weight``.  A weight stored ``(in, out)``
    (*Dive into Deep Learning*'s ``X @ W + b``) is spelled ``tol.matmul(x, w) + b``.

    Each output is a dot product of length ``n = in`` (``n + 1`` with the bias):
    within ``gamma(n + 1) * (|x| @ |weight.mT| + |bias|)`` (Higham (3.5)) in the
    accumulation dtype, plus what the inputs' own errors contribute.  torch may
    round ``x @ weight.mT`` before adding the bias (``F.linear`` on some inputs
    and devices, a layer writing ``x @ w.T + b``): one more rounding of
    ``|x @ weight.mT|`` in low precision.
    """
    if weight.value.dim() != 2 or weight.shape[-1] != input.shape[-1]:
        raise ValueError(
            f"linear: weight of shape {tuple(weight.shape)} does not take input of shape {tuple(input.shape)}: "
            f"weight is (out_features, in_features), as F.linear's and nn.Linear.weight; "
            f"for a weight stored (in, out) write tol.matmul(x, w) + b"
        )
    input, weight = flushable(input), flushable(weight.mT)
    n = input.value.shape[-1]
    magnitude = input.value.abs() @ weight.value.abs()
    product = input.value @ weight.value
    value = product
    inherited = input.error @ (weight.value.abs() + weight.error) + input.value.abs() @ weight.error
    # Each output depends on a whole row of x and a whole column of weight.
    representable = input.representable.all(-1, keepdim=True) & weight.representable.all(0)
    if bias is not None:
        magnitude = magnitude + bias.value.abs()
        value = value + bias.value
        inherited = inherited + bias.error
        representable = representable & bias.representable
        n += 1
    dtype = input.dtype
    device = device_of(input, weight, *([bias] if bias is not None else []))
    error = product_error(magnitude, n, dtype, device, "matmul") + inherited + lost_to_underflow(2 * n, dtype)
    if accumulation_dtype(dtype) != dtype:
        error = error + unit_roundoff(dtype) * product.abs()
    # Partial sums never exceed the sum of magnitudes; every partial result
    # must fit the working dtype (x @ weight may be rounded to it first).
    representable = representable & fits_in(magnitude, error, dtype)
    return accumulated(value, error, representable, magnitude, dtype, device)


# Bounded's operator @ computes with it.
register_operators(matmul=matmul)
