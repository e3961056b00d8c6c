"""Attention: a sequence attending to itself (``F.scaled_dot_product_attention``) and ``nn.MultiheadAttention``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from hypothesis import strategies as st
from torch import nn

from properties import tolerances as tol
from properties.distributions import Uniform, zeros
from properties.errors import SpecError
from properties.gallery.adapter import Option, SelfAttention, _drawn, _Factory, _placed, _spec
from properties.spec import LayerSpec


def attention(q: tol.Bounded, k: tol.Bounded, v: tol.Bounded, *, is_causal: bool) -> tol.Bounded:
    """``tolerances.scaled_dot_product_attention``; causal: query ``i`` sees keys ``0..i`` only
    (bounded on those keys alone, see there), and no claim on a row whose masked scores overflow."""
    if not is_causal:
        return tol.scaled_dot_product_attention(q, k, v)
    if not q.shape[-2]:  # an empty sequence: its (empty) output is the input's
        return q
    scale = 1 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    out = tol.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
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
