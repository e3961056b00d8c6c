"""The machinery every gallery family shares: calling the user's module, reading its parameters, naming the spec.

A family (``linear.py``, ``norms.py``, ...) wraps the user's module in a
``_Factory`` (sizes positionally, the keyword options its signature accepts),
reads the parameters its reference needs with ``_parameters`` and builds its
``LayerSpec`` with ``_spec``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from torch import nn

from properties import tolerances as tol
from properties.errors import SpecError
from properties.spec import LayerSpec

Option = Any  # a value, or a Hypothesis strategy of values

# Sizes drawn by default: small enough for fast examples, large enough for
# reductions to round (16 features) and attention to mask (up to 6 positions).
FEATURES = st.integers(1, 16)


def _drawn(value: Option) -> SearchStrategy[Any]:
    return value if isinstance(value, SearchStrategy) else st.just(value)


_ARGS = "_gallery_constructor_args"


class _Factory:
    """Calls the user's module with the family's sizes (positionally) and the options it accepts.

    Leaves the drawn arguments on each module it builds, so that the ``torch``
    equivalent and the reference use the same sizes and options; on the module
    itself, because its deep copies (a checkpoint, the float64 twin) need them too.
    """

    __module__ = "properties.gallery"  # where users import the gallery from (replay programs name it)

    def __init__(self, family: str, module: Callable[..., nn.Module], sizes: tuple[str, ...], options: tuple[str, ...]):
        self.family, self.module, self.sizes = family, module, sizes
        self.__name__ = getattr(module, "__name__", type(module).__name__)
        accepts = _accepted(module)
        self.options = tuple(o for o in options if accepts is None or o in accepts)
        self.factory_kwargs = accepts is None or {"device", "dtype"} <= accepts
        try:
            signature = inspect.signature(module)
        except (TypeError, ValueError):
            return  # a builtin without a signature: the first call will tell
        try:
            signature.bind(*sizes, **{o: None for o in self.options})
        except TypeError as error:
            call = ", ".join([*sizes, *(f"{o}=..." for o in self.options)])
            raise SpecError(
                f"gallery.{family}({self.__name__}): the family builds its layer as {self.__name__}({call}) "
                f"(sizes positionally, as torch's own constructor takes them), but {self.__name__}{signature} "
                f"cannot be called so: {error}. Give the constructor these arguments, or pass a factory: "
                f"gallery.{family}(lambda {', '.join(sizes) or '**options'}{', **options' if sizes else ''}: "
                f"{self.__name__}(...))."
            ) from None

    def __call__(self, **drawn: Any) -> nn.Module:
        factory = {k: drawn[k] for k in ("device", "dtype") if k in drawn}
        module = self.module(*(drawn[s] for s in self.sizes), **{o: drawn[o] for o in self.options}, **factory)
        if isinstance(module, nn.Module):
            # A plain attribute (not state; scripting skips it), copied and pickled with the module.
            module.__dict__[_ARGS] = (self.family, dict(drawn))
        return module

    def args_of(self, module: nn.Module) -> Mapping[str, Any]:
        family, args = module.__dict__.get(_ARGS, (None, None))
        if family != self.family:
            raise SpecError(
                f"gallery.{self.family}: the torch equivalent and the reference need a module built by the spec "
                f"itself (or a deep copy of one), got {type(module).__name__}"
            )
        return args

    def __repr__(self) -> str:
        return f"gallery.{self.family}({self.__name__})"


def _accepted(module: Callable[..., Any]) -> set[str] | None:
    """The keyword arguments ``module`` accepts (None: any, through ``**kwargs`` or no signature)."""
    try:
        parameters = inspect.signature(module).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _parameters(module: nn.Module, family: str, *, required: tuple[str, ...] = (), **names: str) -> dict[str, Any]:
    """``{role: exact leaf or None}`` for the parameters the family reads, by attribute path.

    Every parameter of ``module`` must be one of them: one under another name
    would otherwise be silently left out of the reference.
    """
    found: dict[str, Any] = {}
    for role, path in names.items():
        value = _attribute(module, path)
        if value is not None and not isinstance(value, torch.Tensor):
            raise SpecError(f"gallery.{family}: {type(module).__name__}.{path} is {type(value).__name__}, not a tensor.")
        if value is None and role in required:
            raise SpecError(
                f"gallery.{family}: {type(module).__name__} has no parameter {path!r}. "
                f"Name yours: gallery.{family}(..., {role}_name='<its attribute path>')."
            )
        found[role] = None if value is None else tol.exact(value)
    unread = [n for n, _ in module.named_parameters() if n not in names.values()]
    if unread:
        options = ", ".join(f"{role}_name=" for role in names)
        raise SpecError(
            f"gallery.{family}: {type(module).__name__} has parameters {unread} that the family does not read "
            f"(it reads {dict(names)}). Name yours with {options}."
        )
    return found


def _with_parameters(twin: nn.Module, module: nn.Module, names: Mapping[str, str | None]) -> nn.Module:
    """torch's ``twin`` with ``module``'s parameters copied in (``{twin's name: module's name}``)."""
    with torch.no_grad():
        for mine, theirs in names.items():
            if getattr(twin, mine, None) is not None:
                getattr(twin, mine).copy_(_attribute(module, theirs))
    return twin


def _attribute(module: nn.Module, path: str) -> Any:
    """``module.a.b`` for the path ``"a.b"`` (None where there is no such attribute)."""
    value: Any = module
    for part in path.split("."):
        value = getattr(value, part, None)
    return value


def _placed(module: nn.Module) -> dict[str, Any]:
    """``device=``/``dtype=`` of ``module`` (its first floating parameter or buffer), for building its torch twin alike."""
    held = next((t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), None)
    return {} if held is None else {"device": held.device, "dtype": held.dtype}


class SelfAttention(nn.Module):
    """``F.scaled_dot_product_attention(x, x, x, is_causal=...)``: a sequence attending to itself."""

    __module__ = "properties.gallery"  # its public address, gallery.SelfAttention (pickles and replays name it)

    def __init__(self, is_causal: bool = True):
        super().__init__()
        self.is_causal = is_causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(x, x, x, is_causal=self.is_causal)

    def extra_repr(self) -> str:
        return f"is_causal={self.is_causal}"


# torch's own modules: a spec on one of them is named after its family alone.
# SelfAttention is here, not in attention.py, because this rule needs it.
_TORCH_DEFAULTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LayerNorm, nn.RMSNorm, nn.GELU, nn.SiLU, nn.Softplus,
                   nn.Softmax, nn.LogSoftmax, SelfAttention, nn.Dropout, nn.BatchNorm1d, nn.Embedding,
                   nn.MultiheadAttention)


def _spec(family: str, factory: _Factory, name: str | None, **fields: Any) -> LayerSpec:
    default = family if factory.module in _TORCH_DEFAULTS else f"{family}_{factory.__name__}"
    return LayerSpec(name=name or default, module=factory, factory_kwargs=factory.factory_kwargs, **fields)
