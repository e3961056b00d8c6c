"""Verified specs of common layer families, for a user's own version of them.

Each function returns a ``LayerSpec`` for one family, built around the module
it is given (torch's own by default)::

    from properties import gallery, register
    register(gallery.rms_norm(MyRMSNorm))

The spec checks the module against the family's exact reference (written with
``properties.tolerances``), the family's laws (``properties.catalogue.laws``:
scale invariance for RMSNorm, rows summing to one for softmax, causality for
causal attention, ...) and against torch's own module built with the same
parameters (the ``equivalents`` entry ``torch``).

How the module is called: with the family's sizes positionally, as torch's
constructor takes them (``MyRMSNorm(normalized_shape)``,
``MyLinear(in_features, out_features)``), and with those of torch's keyword
options (``eps=``, ``bias=``, ``approximate=``, ``device=``/``dtype=``) that
its signature accepts.  A constructor that needs something else gets a
``SpecError`` saying so: pass a factory instead
(``gallery.rms_norm(lambda normalized_shape, **options: MyRMSNorm(dim=normalized_shape))``).
Parameters are read by torch's names (``weight``, ``bias``); the keyword
options ``weight=`` / ``bias=`` name yours.  Options the module does not take
must match its own defaults (the reference uses the gallery's).

torch's own modules pass every spec here (``tests/test_gallery.py``, and the
soak); ``tests/gallery_mutants.py`` lists the bugs each family's properties catch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from torch import nn

from properties import tolerances as tol
from properties.distributions import Uniform, if_present, ones, standard_normal, zeros
from properties.errors import SpecError
from properties.spec import LayerSpec

__all__ = [
    "TORCH_SPECS",
    "batch_norm1d",
    "conv1d",
    "conv2d",
    "dropout",
    "embedding",
    "gelu",
    "layer_norm",
    "linear",
    "log_softmax",
    "multihead_attention",
    "rms_norm",
    "scaled_dot_product_attention",
    "silu",
    "softmax",
    "softplus",
]

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


def _spec(family: str, factory: _Factory, name: str | None, **fields: Any) -> LayerSpec:
    default = family if factory.module in _TORCH_DEFAULTS else f"{family}_{factory.__name__}"
    return LayerSpec(name=name or default, module=factory, factory_kwargs=factory.factory_kwargs, **fields)


# -- linear and convolutions ------------------------------------------------------------


def linear(
    module: Callable[..., nn.Module] = nn.Linear,
    *,
    name: str | None = None,
    in_features: Option = FEATURES,
    out_features: Option = st.integers(1, 8),
    bias: Option = st.booleans(),
    weight_name: str = "weight",
    bias_name: str = "bias",
) -> LayerSpec:
    """``nn.Linear``: ``x @ weight.T + bias``, weight ``(out_features, in_features)``; linear in its input."""
    factory = _Factory("linear", module, ("in_features", "out_features"), ("bias",))

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        p = _parameters(m, "linear", required=("weight",), weight=weight_name, bias=bias_name)
        return tol.linear(x, p["weight"], p["bias"])

    def torch_twin(m: nn.Module) -> nn.Module:
        args = factory.args_of(m)
        twin = nn.Linear(args["in_features"], args["out_features"], bias=_attribute(m, bias_name) is not None, **_placed(m))
        return _with_parameters(twin, m, {"weight": weight_name, "bias": bias_name})

    return _spec(
        "linear", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"in_features": _drawn(in_features), "out_features": _drawn(out_features), "bias": _drawn(bias)}
        ),
        input_event_shape=lambda a: (a["in_features"],),
        output_event_shape=lambda a: (a["out_features"],),
        per_sample=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        linear_in_input=True,
    )


def _convolution(nd: int, module, name, in_channels, out_channels, kernel_size, padding, bias, side, weight_name, bias_name):
    family = f"conv{nd}d"
    factory = _Factory(family, module, ("in_channels", "out_channels", "kernel_size"), ("padding", "bias"))
    sides = ("length",) if nd == 1 else ("height", "width")
    operation = tol.conv1d if nd == 1 else tol.conv2d
    torch_class = nn.Conv1d if nd == 1 else nn.Conv2d

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        p = _parameters(m, family, required=("weight",), weight=weight_name, bias=bias_name)
        return operation(x, p["weight"], p["bias"], padding=factory.args_of(m)["padding"])

    def torch_twin(m: nn.Module) -> nn.Module:
        a = factory.args_of(m)
        twin = torch_class(
            a["in_channels"], a["out_channels"], a["kernel_size"], padding=a["padding"],
            bias=_attribute(m, bias_name) is not None, **_placed(m),
        )
        return _with_parameters(twin, m, {"weight": weight_name, "bias": bias_name})

    def out_side(a: Mapping[str, Any], s: str) -> int:
        return a[s] + 2 * a["padding"] - a["kernel_size"] + 1

    return _spec(
        family, factory, name,
        constructor_args=st.fixed_dictionaries(
            {"in_channels": _drawn(in_channels), "out_channels": _drawn(out_channels), "kernel_size": _drawn(kernel_size),
             "padding": _drawn(padding), "bias": _drawn(bias), **{s: _drawn(side) for s in sides}}
        ).filter(lambda a: all(out_side(a, s) >= 1 for s in sides)),
        input_event_shape=lambda a: (a["in_channels"], *(a[s] for s in sides)),
        output_event_shape=lambda a: (a["out_channels"], *(out_side(a, s) for s in sides)),
        batch_dims=(0, 1),  # torch's convolutions take (C, ...) or (N, C, ...)
        per_sample=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        linear_in_input=True,
    )


def conv1d(
    module: Callable[..., nn.Module] = nn.Conv1d,
    *,
    name: str | None = None,
    in_channels: Option = st.integers(1, 3),
    out_channels: Option = st.integers(1, 3),
    kernel_size: Option = st.integers(1, 3),
    padding: Option = st.integers(0, 1),
    bias: Option = st.booleans(),
    length: Option = st.integers(3, 8),
    weight_name: str = "weight",
    bias_name: str = "bias",
) -> LayerSpec:
    """``nn.Conv1d`` (stride 1, integer padding) on ``(C, L)`` or ``(N, C, L)``; linear in its input."""
    return _convolution(1, module, name, in_channels, out_channels, kernel_size, padding, bias, length, weight_name, bias_name)


def conv2d(
    module: Callable[..., nn.Module] = nn.Conv2d,
    *,
    name: str | None = None,
    in_channels: Option = st.integers(1, 3),
    out_channels: Option = st.integers(1, 3),
    kernel_size: Option = st.integers(1, 3),
    padding: Option = st.integers(0, 1),
    bias: Option = st.booleans(),
    side: Option = st.integers(3, 6),
    weight_name: str = "weight",
    bias_name: str = "bias",
) -> LayerSpec:
    """``nn.Conv2d`` (stride 1, integer padding) on ``(C, H, W)`` or ``(N, C, H, W)``; linear in its input."""
    return _convolution(2, module, name, in_channels, out_channels, kernel_size, padding, bias, side, weight_name, bias_name)


# -- normalization ------------------------------------------------------------------------


def layer_norm(
    module: Callable[..., nn.Module] = nn.LayerNorm,
    *,
    name: str | None = None,
    normalized_shape: Option = FEATURES,
    eps: float = 1e-5,
    elementwise_affine: Option = st.booleans(),
    weight_name: str = "weight",
    bias_name: str = "bias",
) -> LayerSpec:
    """``nn.LayerNorm`` over the last dim: ``(x - mean) / sqrt(var + eps) * weight + bias``
    (biased variance); invariant to shift and positive scale (up to ``eps``)."""
    factory = _Factory("layer_norm", module, ("normalized_shape",), ("eps", "elementwise_affine"))

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        p = _parameters(m, "layer_norm", weight=weight_name, bias=bias_name)
        return tol.layer_norm(x, (x.shape[-1],), p["weight"], p["bias"], eps)

    def torch_twin(m: nn.Module) -> nn.Module:
        n = factory.args_of(m)["normalized_shape"]
        affine = _attribute(m, weight_name) is not None
        twin = nn.LayerNorm(n, eps=eps, elementwise_affine=affine, bias=_attribute(m, bias_name) is not None, **_placed(m))
        return _with_parameters(twin, m, {"weight": weight_name, "bias": bias_name})

    return _spec(
        "layer_norm", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"normalized_shape": _drawn(normalized_shape), "eps": st.just(eps), "elementwise_affine": _drawn(elementwise_affine)}
        ),
        input_event_shape=lambda a: (a["normalized_shape"],),
        per_sample=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        invariances=("shift", "scale"),
        parameter_init=_affine_init(factory, {weight_name: ones(), bias_name: zeros()}),
    )


def rms_norm(
    module: Callable[..., nn.Module] = nn.RMSNorm,
    *,
    name: str | None = None,
    normalized_shape: Option = FEATURES,
    eps: float = 1e-6,
    elementwise_affine: Option = st.booleans(),
    weight_name: str = "weight",
) -> LayerSpec:
    """``nn.RMSNorm`` over the last dim: ``x / sqrt(mean(x**2) + eps) * weight``;
    invariant to positive scale (up to ``eps``)."""
    factory = _Factory("rms_norm", module, ("normalized_shape",), ("eps", "elementwise_affine"))

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        return tol.rms_norm(x, (x.shape[-1],), _parameters(m, "rms_norm", weight=weight_name)["weight"], eps)

    def torch_twin(m: nn.Module) -> nn.Module:
        n = factory.args_of(m)["normalized_shape"]
        twin = nn.RMSNorm(n, eps=eps, elementwise_affine=_attribute(m, weight_name) is not None, **_placed(m))
        return _with_parameters(twin, m, {"weight": weight_name})

    return _spec(
        "rms_norm", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"normalized_shape": _drawn(normalized_shape), "eps": st.just(eps), "elementwise_affine": _drawn(elementwise_affine)}
        ),
        input_event_shape=lambda a: (a["normalized_shape"],),
        per_sample=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        invariances=("scale",),
        parameter_init=_affine_init(factory, {weight_name: ones()}),
    )


def _affine_init(factory: _Factory, init: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    """A norm's weight starts at ones and its bias at zeros, where the constructor's
    ``elementwise_affine`` says it has them; a module without that option is checked
    on the ones it has (a zero-initialized weight must not pass unseen)."""
    if "elementwise_affine" not in factory.options:
        return lambda args: {name: if_present(d) for name, d in init.items()}
    return lambda args: dict(init) if args["elementwise_affine"] else {}


# -- activations and softmax ----------------------------------------------------------------


def _elementwise(family: str, module, name, options: Mapping[str, Any], operation, torch_module, **laws) -> LayerSpec:
    factory = _Factory(family, module, (), tuple(options))
    return _spec(
        family, factory, name,
        constructor_args=dict(options),
        per_sample=True,
        reference=lambda m, x: operation(x),
        equivalents={"torch": lambda m: torch_module()},
        **laws,
    )


def gelu(module: Callable[..., nn.Module] = nn.GELU, *, name: str | None = None, approximate: str = "none") -> LayerSpec:
    """``nn.GELU``: ``x * Phi(x)`` (``approximate="none"``) or its tanh form (``"tanh"``)."""
    if approximate not in ("none", "tanh"):
        raise SpecError(f"gallery.gelu: approximate={approximate!r}; pass 'none' (the exact form) or 'tanh'.")
    name = name or (None if module is not nn.GELU else ("gelu" if approximate == "none" else "gelu_tanh"))
    return _elementwise(
        "gelu", module, name, {"approximate": approximate},
        lambda x: tol.gelu(x, approximate=approximate), lambda: nn.GELU(approximate=approximate),
    )


def silu(module: Callable[..., nn.Module] = nn.SiLU, *, name: str | None = None) -> LayerSpec:
    """``nn.SiLU``: ``x * sigmoid(x)``."""
    return _elementwise("silu", module, name, {}, tol.silu, nn.SiLU)


def softplus(
    module: Callable[..., nn.Module] = nn.Softplus, *, name: str | None = None, beta: float = 1.0, threshold: float = 20.0
) -> LayerSpec:
    """``nn.Softplus``: ``log(1 + exp(beta * x)) / beta``, linear above ``threshold``; non-negative."""
    return _elementwise(
        "softplus", module, name, {"beta": beta, "threshold": threshold},
        lambda x: tol.softplus(x, beta, threshold), lambda: nn.Softplus(beta, threshold), nonnegative_output=True,
    )


def _normalized_exponential(family, module, name, dim, features, operation, torch_class, **laws) -> LayerSpec:
    factory = _Factory(family, module, (), ("dim",))
    return _spec(
        family, factory, name,
        constructor_args=st.fixed_dictionaries({"dim": st.just(dim), "features": _drawn(features)}),
        input_event_shape=lambda a: (a["features"],),
        per_sample=True,
        reference=lambda m, x: operation(x, dim),
        equivalents={"torch": lambda m: torch_class(dim=dim)},
        **laws,
    )


def softmax(module: Callable[..., nn.Module] = nn.Softmax, *, name: str | None = None, features: Option = FEATURES) -> LayerSpec:
    """``nn.Softmax(dim=-1)``: rows are probability distributions; invariant to a shift."""
    return _normalized_exponential(
        "softmax", module, name, -1, features, tol.softmax, nn.Softmax,
        sums_to_one=(-1,), nonnegative_output=True, invariances=("shift",),
    )


def log_softmax(module: Callable[..., nn.Module] = nn.LogSoftmax, *, name: str | None = None, features: Option = FEATURES) -> LayerSpec:
    """``nn.LogSoftmax(dim=-1)``: the exp of each row sums to one; invariant to a shift."""
    return _normalized_exponential(
        "log_softmax", module, name, -1, features, tol.log_softmax, nn.LogSoftmax,
        log_sums_to_one=(-1,), invariances=("shift",),
    )


# -- attention --------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """``F.scaled_dot_product_attention(x, x, x, is_causal=...)``: a sequence attending to itself."""

    def __init__(self, is_causal: bool = True):
        super().__init__()
        self.is_causal = is_causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(x, x, x, is_causal=self.is_causal)

    def extra_repr(self) -> str:
        return f"is_causal={self.is_causal}"


def _concatenated(parts: list[tol.Bounded], dim: int) -> tol.Bounded:
    """Bounded results side by side along ``dim`` (each keeps its own bound)."""
    return tol.Bounded(
        torch.cat([p.value for p in parts], dim), torch.cat([p.error for p in parts], dim),
        torch.cat([p.representable for p in parts], dim), parts[0].dtype, parts[0].device,
    )


def attention(q: tol.Bounded, k: tol.Bounded, v: tol.Bounded, *, is_causal: bool) -> tol.Bounded:
    """``tolerances.scaled_dot_product_attention``; causal: query ``i`` sees keys ``0..i`` only.

    The causal mask is a slice per query, not ``-inf`` scores: a masked score
    contributes ``exp(-inf) = 0`` exactly, so the exact value and its bound
    are those of the unmasked keys alone (and a ``-inf`` leaf would mark the
    row as overflowing, with no claim).
    """
    if not is_causal:
        return tol.scaled_dot_product_attention(q, k, v)
    scale = 1 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    rows = [
        tol.scaled_dot_product_attention(q[..., i : i + 1, :], k[..., : i + 1, :], v[..., : i + 1, :], scale=scale)
        for i in range(q.shape[-2])
    ]
    if not rows:
        return q
    out = _concatenated(rows, -2)
    # Kernels compute every score before masking it: a masked score that overflows
    # the accumulation dtype makes its row NaN (inf - inf), so no claim there (the soak
    # found it in bfloat16 at 1.7e38).
    scores = (q.value.abs() @ k.value.abs().mT) * scale
    fits = (scores <= torch.finfo(tol.accumulation_dtype(q.dtype)).max).all(-1, keepdim=True)
    return tol.Bounded(out.value, out.error, out.representable & fits, out.dtype, out.device)


def scaled_dot_product_attention(
    module: Callable[..., nn.Module] = SelfAttention,
    *,
    name: str | None = None,
    is_causal: bool = True,
    length: Option = st.integers(1, 6),
    features: Option = st.integers(1, 8),
    supports_gradgrad: bool | None = None,
) -> LayerSpec:
    """Self-attention of a ``(..., length, features)`` sequence, ``module(x)`` =
    ``F.scaled_dot_product_attention(x, x, x, is_causal=is_causal)``.  Causal: no
    output depends on a later position; otherwise permutation equivariant.
    ``supports_gradgrad`` (default: False for ``SelfAttention``, whose CPU
    flash-attention kernel has no double backward; True otherwise)."""
    factory = _Factory("scaled_dot_product_attention", module, (), ("is_causal",))
    torch_own = isinstance(module, type) and issubclass(module, SelfAttention)
    laws = {"causal_along": (-2,)} if is_causal else {"permutation_equivariant_along": (-2,)}
    return _spec(
        "scaled_dot_product_attention", factory,
        name or (None if module is not SelfAttention else "causal_attention" if is_causal else "attention"),
        constructor_args=st.fixed_dictionaries(
            {"is_causal": st.just(is_causal), "length": _drawn(length), "features": _drawn(features)}
        ),
        input_event_shape=lambda a: (a["length"], a["features"]),
        batch_dims=(0, 2),
        per_sample=True,
        reference=lambda m, x: attention(x, x, x, is_causal=is_causal),
        equivalents={"torch": lambda m: SelfAttention(is_causal)},
        supports_gradgrad=(not torch_own) if supports_gradgrad is None else supports_gradgrad,
        **laws,
    )


# -- dropout, batch norm, embedding, multi-head attention (the spec model's stochastic, ---------
# -- batch-coupled, integer-input and multi-input layers) ------------------------------------


def dropout(
    module: Callable[..., nn.Module] = nn.Dropout,
    *,
    name: str | None = None,
    p: Option = st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
) -> LayerSpec:
    """``nn.Dropout(p)``: in train mode each element is kept with probability ``1 - p`` and
    scaled by ``1 / (1 - p)``, the mask drawn from torch's RNG; the identity in eval mode."""
    factory = _Factory("dropout", module, (), ("p",))
    return _spec(
        "dropout", factory, name,
        constructor_args=st.fixed_dictionaries({"p": _drawn(p)}),
        batch_dims=(1, 4),
        max_side=8,  # enough elements for the two-seeds check of same_seed_same_mask
        stochastic=True,
        per_sample=True,
        reference=lambda m, x: x,  # eval mode (the reference of a stochastic layer describes eval)
        equivalents={"torch": lambda m: nn.Dropout(factory.args_of(m)["p"])},
        dropout_probability="p",
    )


def batch_norm1d(
    module: Callable[..., nn.Module] = nn.BatchNorm1d,
    *,
    name: str | None = None,
    num_features: Option = st.integers(1, 6),
    affine: Option = st.booleans(),
    eps: float = 1e-5,
) -> LayerSpec:
    """``nn.BatchNorm1d`` on ``(N, C)``: ``(x - mean) / sqrt(var + eps) * weight + bias`` with
    the batch's statistics in train mode (biased variance; a batch of at least two), the
    running ones in eval mode; weight ones, bias zeros, running mean zeros and variance ones
    at construction."""
    factory = _Factory("batch_norm1d", module, ("num_features",), ("eps", "affine"))

    def reference(m: nn.Module, x: tol.Bounded) -> tol.Bounded:
        p = _parameters(m, "batch_norm1d", weight="weight", bias="bias")
        running = [_attribute(m, n) for n in ("running_mean", "running_var")]
        if m.training or any(r is None for r in running):  # without running statistics: the batch's
            return tol.batch_norm(x, weight=p["weight"], bias=p["bias"], training=True, eps=eps)
        return tol.batch_norm(x, *(tol.exact(r) for r in running), p["weight"], p["bias"], training=False, eps=eps)

    def torch_twin(m: nn.Module) -> nn.Module:
        a = factory.args_of(m)
        twin = nn.BatchNorm1d(a["num_features"], eps=eps, affine=_attribute(m, "weight") is not None, **_placed(m))
        twin.load_state_dict(m.state_dict())
        return twin.train(m.training)

    def init(a: Mapping[str, Any]) -> Mapping[str, Any]:
        stats = {"running_mean": zeros(), "running_var": ones()}
        return stats | ({"weight": ones(), "bias": zeros()} if a["affine"] and "affine" in factory.options else {})

    return _spec(
        "batch_norm1d", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"num_features": _drawn(num_features), "eps": st.just(eps), "affine": _drawn(affine)}
        ),
        input_event_shape=lambda a: (a["num_features"],),
        batch_dims=(1, 1),
        batch_sides={0: (2, 4)},  # a batch of one has no variance: torch raises in train mode
        train_eval_differ=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        parameter_init=init,
    )


def embedding(
    module: Callable[..., nn.Module] = nn.Embedding,
    *,
    name: str | None = None,
    num_embeddings: Option = st.integers(1, 8),
    embedding_dim: Option = st.integers(1, 4),
    weight_name: str = "weight",
) -> LayerSpec:
    """``nn.Embedding``: an exact lookup of rows of ``weight`` (initialized from N(0, 1))
    by indices in ``[0, num_embeddings)``."""
    factory = _Factory("embedding", module, ("num_embeddings", "embedding_dim"), ())

    def reference(m: nn.Module, indices: tol.Bounded) -> tol.Bounded:
        weight = _parameters(m, "embedding", required=("weight",), weight=weight_name)["weight"]
        return tol.embedding(indices.value.long(), weight)

    def torch_twin(m: nn.Module) -> nn.Module:
        a = factory.args_of(m)
        return _with_parameters(
            nn.Embedding(a["num_embeddings"], a["embedding_dim"], **_placed(m)), m, {"weight": weight_name}
        )

    return _spec(
        "embedding", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"num_embeddings": _drawn(num_embeddings), "embedding_dim": _drawn(embedding_dim)}
        ),
        input_dtype=torch.long,
        input_range=lambda a: (0, a["num_embeddings"]),
        output_event_shape=lambda a: (a["embedding_dim"],),
        per_sample=True,
        reference=reference,
        equivalents={"torch": torch_twin},
        parameter_init={weight_name: standard_normal()},
    )


def multihead_attention(
    module: Callable[..., nn.Module] = nn.MultiheadAttention,
    *,
    name: str | None = None,
    embed_dim: Option = st.sampled_from([2, 4]),
    num_heads: Option = st.sampled_from([1, 2]),
    supports_gradgrad: bool | None = None,
) -> LayerSpec:
    """``nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)`` called as
    ``module(query, key, value, need_weights=False)`` on ``(L, E)`` or ``(N, L, E)``; its
    first output is checked, against its float64 twin and torch's module with the same
    state (no reference).  ``supports_gradgrad`` (default: False for torch's module, whose
    CPU flash-attention kernel has no double backward; True otherwise)."""
    factory = _Factory("multihead_attention", module, ("embed_dim", "num_heads"), ("batch_first",))
    torch_own = isinstance(module, type) and issubclass(module, nn.MultiheadAttention)

    def torch_twin(m: nn.Module) -> nn.Module:
        a = factory.args_of(m)
        twin = nn.MultiheadAttention(a["embed_dim"], a["num_heads"], batch_first=True, **_placed(m))
        try:
            twin.load_state_dict(m.state_dict())
        except RuntimeError as error:
            raise SpecError(
                f"gallery.multihead_attention: torch's nn.MultiheadAttention cannot take {type(m).__name__}'s "
                f"state_dict ({error}). Name the parameters as torch does (in_proj_weight, in_proj_bias, "
                "out_proj.weight, out_proj.bias), or leave out the equivalent: dataclasses.replace(spec, equivalents={})."
            ) from None
        return twin

    def xavier(a: Mapping[str, Any]) -> Mapping[str, Any]:
        # nn.init.xavier_uniform_ of the (3E, E) input projection; biases zero.
        bound = math.sqrt(6 / (4 * a["embed_dim"]))
        return {"in_proj_weight": Uniform(-bound, bound), "in_proj_bias": zeros(), "out_proj.bias": zeros()}

    return _spec(
        "multihead_attention", factory, name,
        constructor_args=st.fixed_dictionaries(
            {"embed_dim": _drawn(embed_dim), "num_heads": _drawn(num_heads), "batch_first": st.just(True)}
        ).filter(lambda a: a["embed_dim"] % a["num_heads"] == 0),
        input_event_shape=lambda a: (a["embed_dim"],),
        batch_dims=(1, 2),  # (L, E) or (N, L, E)
        # Scores grow with |x|^2: with E <= 4 and xavier-initialized projections
        # (|w| <= sqrt(6 / 4E)) a score is up to about 25 |x|^2, which float16
        # holds (65504) up to |x| ~ 50; beyond, NaN is a range, not a bug (the
        # soak found it at float16's limits; issue 12's MHA spec uses 16 too).
        input_limit=16.0,
        allows_empty=False,  # an empty sequence has no attention weights to normalize
        inputs=lambda a, query, make: ((query, make(query.shape), make(query.shape)), {"need_weights": False}),
        output=0,  # (attn_output, attn_weights)
        supports_gradgrad=(not torch_own) if supports_gradgrad is None else supports_gradgrad,
        equivalents={"torch": torch_twin},
        parameter_init=xavier if torch_own else {},
    )


_TORCH_DEFAULTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LayerNorm, nn.RMSNorm, nn.GELU, nn.SiLU, nn.Softplus,
                   nn.Softmax, nn.LogSoftmax, SelfAttention, nn.Dropout, nn.BatchNorm1d, nn.Embedding,
                   nn.MultiheadAttention)


def torch_specs() -> list[LayerSpec]:
    """Every family on torch's own modules (the framework's self-test; torch is correct by definition)."""
    return [
        linear(), conv1d(), conv2d(), layer_norm(), rms_norm(), gelu(), gelu(approximate="tanh"), silu(), softplus(),
        softmax(), log_softmax(), scaled_dot_product_attention(), scaled_dot_product_attention(is_causal=False),
        dropout(), batch_norm1d(), embedding(), multihead_attention(),
    ]


TORCH_SPECS = torch_specs()
