"""Tolerances from rounding-error bounds, not from one fixed atol.

A spec's reference is written with the operations below.  Each takes and
returns a :class:`Bounded`: the exact result (computed in float64 from the same
rounded inputs and parameters, so casting up is exact), a bound on how far a
computation carried out in the working dtype may be from it, and where that
claim holds at all (no intermediate result can overflow).  The bound scales
with the magnitudes involved and the reduction length, so it stays tight for
ordinary values and does not fail on huge values or cancellation.

Standard analysis (Higham, *Accuracy and Stability of Numerical Algorithms*,
2nd ed., ch. 2-4), with unit roundoff ``u`` and ``gamma(n) = n*u / (1 - n*u)``:

* a sum of ``n`` terms is within ``gamma(n-1) * sum(|x|)`` of the exact sum in
  any summation order (Higham (4.4); pairwise and blocked orders do better);
* a dot product of length ``n`` is within ``gamma(n) * |x|^T |y|`` (Higham (3.5));
* one elementwise operation adds one rounding, ``u * |result|`` (Higham (2.4)).

Where torch accumulates: float16/bfloat16 reductions, products and fused
kernels (softmax, layer_norm, ...) run in float32 on CPU and CUDA and round
once to the working dtype, so the accumulation term uses float32's ``u`` and
one rounding ``u_work * |result|`` is added.  A layer that accumulates in the
working dtype itself declares ``LayerSpec(accumulation="working")``; the
framework then evaluates its reference inside ``accumulating("working")``.
float32 matrix products and convolutions on CUDA may round their inputs to
TF32 (10-bit mantissa) when ``torch.backends.cuda.matmul.allow_tf32`` /
``torch.backends.cudnn.allow_tf32`` are on; the bound then adds ``2 * 2**-11``
per product (``2 * 2**-8`` under ``set_float32_matmul_precision("medium")``).

The float64 reference rounds too: every operation adds the same bound with
float64's ``u`` for the reference's own rounding, so that float64 layers are
judged soundly (there the two terms are of the same size).  Each operation may
also lose up to the dtype's smallest normal number to underflow
(flush-to-zero kernels lose that much, gradual underflow less), and products
may read a subnormal operand as zero (denormals-are-zero).  A bound that
comes out infinite or NaN (an ill-conditioned point, such as ``log`` next to
zero) makes no claim there; ``assert_within_bound`` records it as a
Hypothesis event, never as a silent pass.
"""

# One module per kind of operation, each importing only those below it: rounding (the model,
# Bounded) <- elementwise <- reductions <- fused <- products <- convolutions; check holds the
# comparison, mirrors the torch function each operation mirrors.
from properties.tolerances.rounding import (
    ACCUMULATIONS, SLACK, Bounded, accumulating, accumulation_dtype, cast, exact, gamma, unit_roundoff,
)
from properties.tolerances.elementwise import (
    LIBRARY_ULPS, abs, add, clamp, divide, erf, exp, expm1, gelu, log, log1p, multiply, pow, reciprocal, relu, rsqrt,
    sigmoid, silu, softplus, sqrt, subtract, tanh, where,
)
from properties.tolerances.reductions import amax, amin, logsumexp, mean, std, sum, var
from properties.tolerances.fused import batch_norm, instance_norm, layer_norm, log_softmax, rms_norm, softmax
from properties.tolerances.products import einsum, linear, matmul, scaled_dot_product_attention
from properties.tolerances.convolutions import (
    conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, embedding,
)
from properties.tolerances.check import ToleranceExceeded, assert_within_bound
from properties.tolerances.mirrors import MIRRORS

# moved: wave-3 removes (tests/test_tolerance_operations.py reads tol._GELU_SLOPE / tol._SILU_SLOPE;
# the slopes are public in properties.tolerances.elementwise).
from properties.tolerances.elementwise import GELU_SLOPE as _GELU_SLOPE, SILU_SLOPE as _SILU_SLOPE

__all__ = [
    "ACCUMULATIONS",
    "Bounded",
    "LIBRARY_ULPS",
    "MIRRORS",
    "SLACK",
    "ToleranceExceeded",
    "abs",
    "accumulating",
    "accumulation_dtype",
    "add",
    "amax",
    "amin",
    "assert_within_bound",
    "batch_norm",
    "cast",
    "clamp",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "divide",
    "einsum",
    "embedding",
    "erf",
    "exact",
    "exp",
    "expm1",
    "gamma",
    "gelu",
    "instance_norm",
    "layer_norm",
    "linear",
    "log",
    "log1p",
    "log_softmax",
    "logsumexp",
    "matmul",
    "mean",
    "multiply",
    "pow",
    "reciprocal",
    "relu",
    "rms_norm",
    "rsqrt",
    "scaled_dot_product_attention",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "sqrt",
    "std",
    "subtract",
    "sum",
    "tanh",
    "unit_roundoff",
    "var",
    "where",
]
