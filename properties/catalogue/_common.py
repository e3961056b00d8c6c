"""Helpers only the catalogue's properties share: the modes a comparison runs in,
a sample's part of a bound, and the lower-precision hint.  The helpers a property
author needs (``reference``, ``exact_output``, ``forward``, ...) are in
``properties.authoring``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from properties import tolerances
from properties.cases import LayerCase
from properties.names import dtype_name


def compared_modes(case: LayerCase) -> tuple[str, ...]:
    """The modes a comparison with the reference or an equivalent runs in: train and eval
    (a layer whose modes differ can be wrong in either), eval only for a stochastic layer
    (the reference describes eval; two random masks are never compared)."""
    return ("eval",) if case.spec.stochastic else ("train", "eval")


def sample(bound: tolerances.Bounded, index: int) -> tolerances.Bounded:
    """The part of ``bound`` at ``index`` of its first dimension."""
    return tolerances.Bounded(bound.value[index], bound.error[index], bound.representable[index], bound.dtype)


class _Narrowing(TorchDispatchMode):
    """Records the floating dtypes of lower precision than ``dtype`` that an operation
    produced from a ``dtype`` tensor (``x.float()`` on float64 ``x``: float32)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype, self.found = dtype, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t.dtype == self.dtype for t in tree_leaves((args, kwargs))):
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.is_floating_point() and _coarser(t.dtype, self.dtype):
                    self.found[t.dtype] = None
        return out


def _coarser(dtype: torch.dtype, than: torch.dtype) -> bool:
    return torch.finfo(dtype).eps > torch.finfo(than).eps


# The cast a layer would have written to land in each dtype.
_CASTS = {torch.float32: ".float()", torch.float16: ".half()", torch.bfloat16: ".bfloat16()"}


def computed_in_lower_precision(function: Callable[..., Any], *args: Any, dtype: torch.dtype) -> str:
    """Where ``function(*args)`` (the layer, on ``dtype`` inputs and parameters) turns ``dtype``
    values into a coarser dtype, ``"computed in float32: a `.float()` cast? (...)"``; else ``""``.

    Read from the operations torch dispatches, not from the values, so it does not depend on
    how a processor rounds.  Only a hint for a failure already found (a layer may cast on purpose).
    """
    mode = _Narrowing(dtype)
    try:
        with torch.no_grad(), mode:
            function(*args)
    except Exception:
        return ""
    if not mode.found:
        return ""
    names = " and ".join(dtype_name(d) for d in mode.found)
    casts = "".join(f"`{_CASTS[d]}` " for d in mode.found if d in _CASTS)
    return f"computed in {names}: a {casts}cast? (forward turns {dtype_name(dtype)} values into {names})"
