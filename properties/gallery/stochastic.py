"""Dropout (stochastic in train mode) and embedding (an integer-input lookup)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from hypothesis import strategies as st
from torch import nn

from properties import tolerances as tol
from properties.distributions import standard_normal
from properties.gallery.adapter import Option, _drawn, _Factory, _parameters, _placed, _spec, _with_parameters
from properties.spec import LayerSpec


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
