"""Batch structure: each sample's output is that sample's alone."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

from properties import tolerances
from properties.authoring import assert_same_computation, comparable, comparison_bound, exact_output, forward
from properties.cases import LayerCase
from properties.catalogue._common import sample
from properties.claims import no_claim
from properties.registry import layer_property


@layer_property(requires=("per_sample",), extra=st.integers(0, 2**16))
def samples_are_independent(case: LayerCase, pick: int) -> None:
    """For a per-sample layer, each sample's output equals the output of that sample
    alone: unbatched, and as a batch of one; an unbatched input equals a batch of one.
    Every tensor argument with the main input's batch dimensions is sliced with it.
    Only inputs the spec admits are made: one batch dimension fewer or more within
    ``batch_dims``, a batch of one where ``batch_sides`` allows it (GroupNorm takes
    no unbatched input, BatchNorm1d in train mode no batch of one)."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    batch_dims = case.batch_ndim(x)
    fewest, most = case.spec.batch_dims
    one_allowed = case.spec.batch_sides.get(0, (1, 1))[0] <= 1
    out = forward(case, module, x)
    expected = exact_output(case, module, x)
    name = case.spec.name
    args, kwargs = case.arguments(x)

    def sliced(index: Any) -> torch.Tensor:
        """The layer on every batched argument indexed by ``index``, the others as they are."""

        def pick(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.shape[:batch_dims] == x.shape[:batch_dims]:
                return value[index]
            if isinstance(value, (tuple, list)):  # nn.LSTMCell's hx=(h, c)
                return type(value)(pick(v) for v in value)
            return value

        with torch.no_grad():
            return case.call(module, tuple(pick(a) for a in args), {k: pick(v) for k, v in kwargs.items()})

    if batch_dims == 0:
        if most < 1 or not one_allowed:
            no_claim("samples_are_independent: the spec admits no batch of one")
            return
        alone = sliced(None)  # x[None]: every argument as a batch of one
        assert alone.shape[0] == 1, f"{name}: a batch of one gave {tuple(alone.shape)}"
        assert_same_computation(alone[0], out, expected, what=f"{name}: a batch of one vs the unbatched input")
        return
    if x.shape[0] == 0:
        no_claim("samples_are_independent: empty batch")
        return
    i = pick % x.shape[0]
    # The bound of the whole batch, then sample i's part (the twin's RMS term
    # is taken over the whole canonical output).
    in_batch = sample(comparison_bound(out, expected, what=name), i)
    if batch_dims - 1 >= fewest:
        tolerances.assert_within_bound(
            sliced(i), in_batch, what=f"{name}: sample {i} alone (one batch dim fewer) vs in the batch"
        )
    if one_allowed:
        tolerances.assert_within_bound(
            sliced(slice(i, i + 1))[0], in_batch, what=f"{name}: sample {i} as a batch of one vs in the batch"
        )
    if batch_dims - 1 < fewest and not one_allowed:
        no_claim("samples_are_independent: the spec admits neither a sample alone nor a batch of one")
