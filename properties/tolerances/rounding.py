"""The rounding model every operation builds on: unit roundoff, ``gamma``, where
torch accumulates (``accumulating``), and ``Bounded``, an exact value with its
error bound, with the helpers that create (``exact``), round (``cast``) and
finish results.  See ``properties.tolerances`` for the analysis.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator

import torch

from properties.names import dtype_name
from properties.tolerances.mirrors import MIRRORS

# The operation for each torch function's name (torch.relu and F.relu alike), and torch's aliases.
_OPERATION_OF = {
    **{path.rsplit(".", 1)[1]: operation for operation, path in MIRRORS.items()},
    "mul": "multiply", "sub": "subtract", "div": "divide", "true_divide": "divide", "absolute": "abs",
    "clip": "clamp", "special_expit": "sigmoid", "special_erf": "erf",
}

# A computed result may be off by up to ``SLACK`` times the bound the
# operations derive.  The bounds are worst cases already and include the float64
# reference's own rounding explicitly (for float64 layers it is as large as
# the layer's); the factor 2 covers the second-order terms the first-order
# propagation through library functions drops.
SLACK = 2.0

U64 = 2.0**-53  # the float64 reference's unit roundoff

ACCUMULATIONS = ("torch", "working")
_accumulation: contextvars.ContextVar[str] = contextvars.ContextVar("accumulation", default="torch")


@contextlib.contextmanager
def accumulating(mode: str) -> Iterator[None]:
    """Build bounds for a computation that accumulates as ``mode`` says.

    ``"torch"`` (the default): float16/bfloat16 accumulate in float32, as
    torch's reductions, matmuls and fused kernels do.  ``"working"``: in the
    working dtype itself (a layer that sums bfloat16 values in bfloat16).
    """
    if mode not in ACCUMULATIONS:
        raise ValueError(f"accumulating({mode!r}): choose from {ACCUMULATIONS}.")
    token = _accumulation.set(mode)
    try:
        yield
    finally:
        _accumulation.reset(token)


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half the distance from 1.0 to the next number: float32 2**-24, float16 2**-11."""
    return torch.finfo(dtype).eps / 2


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype reductions of ``dtype`` accumulate in (see ``accumulating``)."""
    if _accumulation.get() == "working":
        return dtype
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def note(text: str) -> None:
    """A Hypothesis event inside a test (counted in its statistics); nothing outside one."""
    from hypothesis import event
    from hypothesis.control import _current_build_context

    if _current_build_context.value is not None:
        event(text)


def gamma(n: int, dtype: torch.dtype) -> float:
    """``n*u / (1 - n*u)``: the relative error bound of ``n`` chained roundings (Higham Lemma 3.1).

    Infinite once ``n*u >= 1`` (bfloat16 from n = 256): recorded as an event.
    """
    nu = max(n, 0) * unit_roundoff(dtype)
    if nu >= 1:
        note(f"bound: infinite in {dtype_name(dtype)} (n={n})")
        return math.inf
    return nu / (1 - nu)


def gamma_both(n: int, dtype: torch.dtype) -> float:
    """``gamma(n)`` of the computation plus the float64 reference's own."""
    return gamma(n, dtype) + gamma(n, torch.float64)


def lost_to_underflow(n: int, dtype: torch.dtype) -> float:
    """Absolute error ``n`` accumulated operations and the final rounding may lose to underflow."""
    return n * torch.finfo(accumulation_dtype(dtype)).tiny + torch.finfo(dtype).tiny


# Bounded's operators stand for operations defined in the modules above this one
# (elementwise.py, products.py), which register them here as they are imported;
# properties.tolerances imports them all, so importing any part of it fills this in.
_OPERATORS: dict[str, Callable[..., Bounded]] = {}


def register_operators(**operations: Callable[..., Bounded]) -> None:
    """Name the operations Bounded's operators (``+ - * / ** @``) compute with."""
    _OPERATORS.update(operations)


@dataclasses.dataclass(frozen=True)
class Bounded:
    """An exact float64 value with the error bound of computing it in ``dtype``.

    ``representable`` is False where an intermediate result of the computation
    may exceed the dtype's range (or the accumulation dtype's, for a
    reduction): there inf/NaN are legitimate and no claim is made.
    ``device`` is where the computation runs (TF32 applies on CUDA only).

    Arithmetic operators work as the operations do (``x - mean(x, dim=-1,
    keepdim=True)``, ``a @ b``, ``2 * x``, ``x ** 2``); ``map`` applies a
    function that only moves elements (transpose, reshape, indexing).
    """

    value: torch.Tensor
    error: torch.Tensor
    representable: torch.Tensor
    dtype: torch.dtype
    device: str = "cpu"

    @property
    def shape(self) -> torch.Size:
        return self.value.shape

    @property
    def mT(self) -> Bounded:
        return self.map(lambda t: t.mT)

    def map(self, move: Callable[[torch.Tensor], torch.Tensor]) -> Bounded:
        """``move`` (transpose, reshape, indexing, ...) applied to value, error and mask alike."""
        return Bounded(move(self.value), move(self.error), move(self.representable), self.dtype, self.device)

    def __getitem__(self, index) -> Bounded:
        return self.map(lambda t: t[index])

    def _rounded(self, value, error, representable) -> Bounded:
        """A new result, rounded once to ``dtype`` (and by the float64 reference)."""
        error = error + unit_roundoff(self.dtype) * (value.abs() + error) + U64 * value.abs()
        return finish(value, error, representable, self.dtype, self.device)

    def __add__(self, other) -> Bounded:
        return _OPERATORS["add"](self, other)

    def __radd__(self, other) -> Bounded:
        return _OPERATORS["add"](other, self)

    def __sub__(self, other) -> Bounded:
        return _OPERATORS["subtract"](self, other)

    def __rsub__(self, other) -> Bounded:
        return _OPERATORS["subtract"](other, self)

    def __mul__(self, other) -> Bounded:
        return _OPERATORS["multiply"](self, other)

    def __rmul__(self, other) -> Bounded:
        return _OPERATORS["multiply"](other, self)

    def __truediv__(self, other) -> Bounded:
        return _OPERATORS["divide"](self, other)

    def __rtruediv__(self, other) -> Bounded:
        return _OPERATORS["divide"](other, self)

    def __matmul__(self, other) -> Bounded:
        return _OPERATORS["matmul"](self, other)

    def __neg__(self) -> Bounded:
        return Bounded(-self.value, self.error, self.representable, self.dtype, self.device)

    def __pow__(self, exponent: int) -> Bounded:
        return _OPERATORS["pow"](self, exponent)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        """torch's functions see a Bounded and would fail deep inside (or drop its bound):
        say which operation of properties.tolerances to use instead (``torch.relu`` -> ``tol.relu``)."""
        name = getattr(func, "__name__", "")
        if name.startswith("__"):
            # ``tensor + bounded``: torch's operator gives up (NotImplemented), and Python
            # then calls Bounded.__radd__, which computes the bound.
            return NotImplemented
        called = torch.overrides.resolve_name(func) or name
        if name in _OPERATION_OF:
            raise TypeError(
                f"{called} was called on a tolerances.Bounded, which carries an error bound torch's functions "
                f"do not compute: use tol.{_OPERATION_OF[name]} (properties.tolerances.{_OPERATION_OF[name]}) instead."
            )
        raise TypeError(
            f"{called} was called on a tolerances.Bounded, which carries an error bound torch's functions "
            "do not compute, and properties.tolerances has no such operation: compute with tol operations "
            "(tol.linear, tol.sum, tol.exp, ...; the operators + - * / ** and @ work on a Bounded), and move elements "
            "(transpose, reshape, indexing) with .map, e.g. b.map(lambda t: t.transpose(-1, -2))."
        )


def fits_in(magnitude: torch.Tensor, error: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Whether every partial result fits ``dtype`` (an infinite bound is no claim, not an overflow)."""
    return (magnitude + error <= torch.finfo(dtype).max) | error.isinf()


def finish(value, error, representable, dtype, device) -> Bounded:
    """The result: a NaN bound becomes infinite (no claim), an overflowing one unrepresentable."""
    error = torch.nan_to_num(error, nan=math.inf, posinf=math.inf)
    # A NaN value the exact computation owes (a mean over nothing) stays a claim.
    fits = value.isnan() | (value.abs() + error <= torch.finfo(dtype).max) | error.isinf()
    return Bounded(value, error, representable & fits, dtype, device)


def exact(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> Bounded:
    """A leaf: an input or a parameter, already rounded to ``dtype`` (no error)."""
    dtype = tensor.dtype if dtype is None else dtype
    value = tensor.detach().to(device="cpu", dtype=torch.float64)
    return Bounded(value, torch.zeros_like(value), value.isfinite(), dtype, tensor.device.type)


def _leaf(x, like: Bounded) -> Bounded:
    """A Python number or tensor mixed into an operation: exact, in ``like``'s dtype."""
    if isinstance(x, Bounded):
        return x
    value = torch.as_tensor(x, dtype=torch.float64).detach().cpu()
    return Bounded(value, torch.zeros_like(value), value.isfinite(), like.dtype, like.device)


def pair(a, b) -> tuple[Bounded, Bounded]:
    """Two operands as Bounded, a number or tensor among them exact in the other's dtype."""
    if not isinstance(a, Bounded) and not isinstance(b, Bounded):
        raise TypeError("tolerances: at least one operand must be a Bounded (wrap tensors with exact())")
    a = _leaf(a, b) if not isinstance(a, Bounded) else a
    return a, _leaf(b, a)


def device_of(*operands: Bounded) -> str:
    """Where a computation on ``operands`` runs: the first one not on the CPU, else the CPU."""
    return next((o.device for o in operands if o.device != "cpu"), "cpu")


def cast(a: Bounded, dtype: torch.dtype) -> Bounded:
    """``a.to(dtype)``: one rounding into ``dtype`` (none where ``dtype`` holds ``a``'s exactly).

    Subsequent operations then round in ``dtype``.
    """
    wider = torch.finfo(dtype).bits >= torch.finfo(a.dtype).bits and (
        torch.finfo(dtype).eps <= torch.finfo(a.dtype).eps and torch.finfo(dtype).max >= torch.finfo(a.dtype).max
    )
    if wider:  # float16 -> float32 -> float64, bfloat16 -> float32: exact
        return dataclasses.replace(a, dtype=dtype)
    error = a.error + unit_roundoff(dtype) * (a.value.abs() + a.error) + torch.finfo(dtype).tiny
    return finish(a.value, error, a.representable, dtype, a.device)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype torch evaluates elementwise functions of ``dtype`` in (opmath)."""
    return accumulation_dtype(dtype)


def accumulated(value, error, representable, magnitude, dtype, device) -> Bounded:
    """A result accumulated in ``accumulation_dtype(dtype)``, then rounded once to ``dtype``."""
    accumulation = accumulation_dtype(dtype)
    representable = representable & fits_in(magnitude, error, accumulation)
    if accumulation != dtype:
        error = error + unit_roundoff(dtype) * (value.abs() + error)
    return finish(value, error, representable, dtype, device)
