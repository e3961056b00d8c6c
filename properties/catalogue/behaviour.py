"""Behaviour: inputs left alone, determinism, train/eval parity, batch structure, layout."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import strategies as st

from properties.claims import no_claim
from properties import tolerances
from properties.cases import LayerCase
from properties.catalogue._common import (
    assert_identical,
    assert_same_computation,
    comparable,
    comparison_bound,
    exact_output,
    forward,
    sample,
)
from properties.registry import layer_property


@layer_property(family="robustness")
def leaves_its_input_alone(case: LayerCase) -> None:
    """Forward does not modify its input: same values, same autograd version counter."""
    __tracebackhide__ = True
    x = case.make_input()
    before, version = x.clone(), x._version
    forward(case, case.build(), x)
    assert x._version == version, (
        f"{case.spec.name}: forward modified its input in place (version counter {version} -> {x._version})"
    )
    assert_identical(x, before, what=f"{case.spec.name}: the input after forward vs before")


@layer_property(family="robustness")
def is_deterministic(case: LayerCase) -> None:
    """The same input and state give the same output, bit for bit."""
    __tracebackhide__ = True
    module = case.build()
    first = forward(case, module, case.make_input())
    second = forward(case, module, case.make_input())
    assert_identical(second, first, what=f"{case.spec.name}: a second forward of the same input")


@layer_property(family="robustness")
def train_and_eval_agree(case: LayerCase) -> None:
    """Train and eval mode compute the same, unless the spec declares they differ
    (catches dropout or other randomness left on)."""
    __tracebackhide__ = True
    if case.spec.train_eval_differ or case.spec.stochastic:
        which = "train_eval_differ" if case.spec.train_eval_differ else "stochastic"
        pytest.skip(f"{case.spec.name} declares {which}")
    module, x = case.build(), case.make_input()
    trained = forward(case, module.train(), x)
    evaluated = forward(case, module.eval(), x)
    expected = exact_output(case, module, x)  # eval mode: the canonical computation
    assert_same_computation(trained, evaluated, expected, what=f"{case.spec.name} in train mode vs eval mode")


@layer_property(family="batch", requires=("per_sample",), extra=st.integers(0, 2**16))
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


def _non_contiguous(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``x`` in a non-contiguous layout (strided where a transpose stays contiguous)."""
    if layout == "transposed" and x.dim() >= 2:
        transposed = x.transpose(0, 1).contiguous().transpose(0, 1)
        if not transposed.is_contiguous():
            return transposed
    # Every other element of a buffer twice the size: strided in the last dimension.
    wide = torch.empty((*x.shape, 2), dtype=x.dtype, device=x.device)
    wide[..., 0] = x
    return wide[..., 0]


@layer_property(family="robustness", extra=st.sampled_from(["strided", "transposed"]))
def ignores_memory_layout(case: LayerCase, layout: str) -> None:
    """Non-contiguous inputs (strided, transposed) give the same result as contiguous ones."""
    __tracebackhide__ = True
    module, x = comparable(case), case.make_input()
    strided = _non_contiguous(x, layout)
    if strided.is_contiguous():  # one element, or sides of one: no other layout exists
        no_claim("ignores_memory_layout: layout stayed contiguous")
    out = forward(case, module, x)
    expected = exact_output(case, module, x)
    assert_same_computation(
        forward(case, module, strided), out, expected, what=f"{case.spec.name}: {layout} input vs contiguous input"
    )
