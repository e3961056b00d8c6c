"""The spec model's facts do what they say: expected failures are strict xfails, the input
domain is never left, stochastic layers are compared with themselves only under the same
seed or in eval mode, index and mask inputs, exact initialization facts, and the gradient
message.  Each fact is shown catching a broken layer and passing the correct one."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from layers.known_bad import TextbookMyLinear
from layers.specs import my_linear_spec
from properties import LayerSpec, SpecError, check_layer, tolerances as tol
from properties.authoring import LayerRaised
from properties.distributions import Eye, ones
from properties.spec import ExpectedFailure
from properties.strategies import layer_cases
from tests.test_torch_layer_specs import CI_LIKE, batch_norm_spec, dropout_spec, embedding_spec

TEXTBOOK = dataclasses.replace(my_linear_spec, name="TextbookMyLinear", module=TextbookMyLinear)
DOT_DATA = ExpectedFailure(property="gradient_flow", reason="forward reads .data (the lesson's bug)")


def caught(spec, prop):
    with pytest.raises(AssertionError) as failure:
        check_layer(spec, [prop], settings=CI_LIKE)
    return str(failure.value)


# -- expected failures ------------------------------------------------------------


def test_a_declared_expected_failure_that_fails_passes_the_check():
    check_layer(dataclasses.replace(TEXTBOOK, expected_failures=[DOT_DATA]), ["gradient_flow"], settings=CI_LIKE)


def test_an_expected_failure_that_passes_fails_strictly():
    message = caught(dataclasses.replace(my_linear_spec, expected_failures=[DOT_DATA]), "gradient_flow")
    assert "XPASS (strict)" in message and "the lesson's bug" in message


def test_an_expected_failure_covers_only_its_dtypes():
    # Declared for float16 only: the other dtypes still run, and still catch the bug.
    only_half = dataclasses.replace(DOT_DATA, dtypes=(torch.float16,))
    message = caught(dataclasses.replace(TEXTBOOK, expected_failures=[only_half]), "gradient_flow")
    assert "received no gradient" in message and "float16" not in message.split("Draw")[-1].split("module_seed")[0]


def test_expected_failures_must_name_a_property_and_a_reason():
    with pytest.raises(SpecError, match="expected_failures"):
        dataclasses.replace(TEXTBOOK, expected_failures=[ExpectedFailure(property="gradient_flow", reason=" ")])
    with pytest.raises(SpecError, match="'expected_failures' names \\['no_such_property'\\]"):
        check_layer(dataclasses.replace(TEXTBOOK, expected_failures=[ExpectedFailure(property="no_such_property", reason="x")]))


XFAIL_CONFTEST = """
import dataclasses
from layers.known_bad import TextbookMyLinear
from layers.specs import my_linear_spec
from properties import register
from properties.spec import ExpectedFailure

DOT_DATA = ExpectedFailure(property="gradient_flow", reason="forward reads .data")
register(
    dataclasses.replace(my_linear_spec, name="TextbookMyLinear", module=TextbookMyLinear, expected_failures=[DOT_DATA]),
    dataclasses.replace(my_linear_spec, expected_failures=[DOT_DATA]),
)
"""


@pytest.mark.slow
def test_the_gate_reports_xfail_and_fails_a_strict_xpass(pytester):
    pytester.makeconftest(XFAIL_CONFTEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--properties", "gradient_flow", "-rxXs")
    # Both ordinary parts are skipped (every dtype is declared); TextbookMyLinear's xfail
    # part fails as declared (xfailed), MyLinear's passes, which fails strictly.
    result.assert_outcomes(skipped=2, xfailed=1, failed=1)
    out = result.stdout.str()
    assert "test_gradient_flow[TextbookMyLinear-xfail]" in out and "XPASS(strict)" in out
    assert "gradient_flow [TextbookMyLinear] xfail: gradient_flow expected to fail: forward reads .data" in out


# -- the input domain ---------------------------------------------------------------

NARROW = dataclasses.replace(
    embedding_spec,
    name="NarrowEmbedding",
    batch_dims=(1, 3),
    batch_sides={0: (2, 3), 2: (1, 1)},
)


@settings(max_examples=200, database=None, deadline=None)
@given(st.data())
def test_drawn_inputs_stay_inside_the_declared_domain(data):
    case = data.draw(layer_cases(NARROW))
    x = case.make_input()
    assert x.dtype == torch.long and case.dtype in NARROW.dtypes
    assert 2 <= x.shape[0] <= 3 and (x.dim() < 3 or x.shape[2] == 1)
    assert x.numel() == 0 or (0 <= int(x.min()) and int(x.max()) < case.constructor_args["num_embeddings"])
    limited = data.draw(layer_cases(dataclasses.replace(my_linear_spec, input_limit=3.0)))
    assert bool((limited.make_input().abs() <= 3.0).all())


def test_a_domain_without_valid_inputs_is_one_spec_error_naming_the_field():
    with pytest.raises(SpecError, match="'input_range'.*no valid input"):
        dataclasses.replace(embedding_spec, input_range=(3, 3))
    with pytest.raises(SpecError, match="'batch_sides'"):
        dataclasses.replace(batch_norm_spec, batch_sides={0: (3, 2)})
    with pytest.raises(SpecError, match="'batch_sides'.*not a batch dimension"):
        dataclasses.replace(batch_norm_spec, batch_sides={1: (2, 2)})
    with pytest.raises(SpecError, match="'input_dtype'"):
        dataclasses.replace(embedding_spec, input_dtype=torch.float16)
    # A range computed from the constructor arguments: the error names the arguments.
    empty = dataclasses.replace(embedding_spec, input_range=lambda args: (0, args["num_embeddings"] - 9))
    with pytest.raises(SpecError, match="'input_range'.*for constructor arguments"):
        check_layer(empty, ["is_deterministic"], settings=CI_LIKE)


def test_an_input_inside_the_domain_that_raises_is_a_failure_of_the_layer():
    # BatchNorm1d with batches of one allowed: train mode raises, and that is the layer's failure.
    ones_allowed = dataclasses.replace(batch_norm_spec, batch_sides={0: (1, 4)})
    with pytest.raises(LayerRaised, match="raised ValueError on a valid input.*Expected more than 1 value per channel"):
        check_layer(ones_allowed, ["is_deterministic"], settings=CI_LIKE)


# -- stochastic layers ----------------------------------------------------------------


class DropoutInEval(nn.Dropout):
    """Dropout that keeps dropping in eval mode."""

    def forward(self, x):
        return F.dropout(x, self.p, training=True)


class UnseededDropout(nn.Dropout):
    """Masks from a generator of its own, not torch's: a seed does not reproduce them."""

    def __init__(self, p=0.5):
        super().__init__(p)
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep.to(x.device) / (1 - self.p) if self.p < 1 else x * 0


def test_stochastic_layers_are_checked_in_eval_mode_and_under_one_seed():
    assert "eval mode" in caught(dataclasses.replace(dropout_spec, name="DropoutInEval", module=DropoutInEval), "matches_reference")
    assert "a second forward" in caught(
        dataclasses.replace(dropout_spec, name="UnseededDropout", module=UnseededDropout), "is_deterministic"
    )


# -- index and mask inputs, several inputs --------------------------------------------


class OffByOneEmbedding(nn.Embedding):
    def forward(self, indices):
        return super().forward((indices + 1) % self.num_embeddings)


class MaskedZero(nn.Module):
    """Zeros where the mask is set: a float input and a bool mask."""

    def forward(self, x, mask):
        return x.masked_fill(mask, 0)


masked_zero_spec = LayerSpec(
    name="MaskedZero",
    module=MaskedZero,
    factory_kwargs=False,
    inputs=lambda args, x, make: ((x, make(x.shape, torch.bool)), {}),
    reference=lambda module, x, mask: tol.exact(torch.where(mask.value.bool(), 0.0, x.value), x.dtype),
    per_sample=True,
)


class MaskIgnored(MaskedZero):
    def forward(self, x, mask):
        return x.clone()


def test_index_and_mask_inputs_pass_when_right_and_are_caught_when_wrong():
    assert "elements outside the error bound" in caught(
        dataclasses.replace(embedding_spec, name="OffByOneEmbedding", module=OffByOneEmbedding), "matches_reference"
    )
    for prop in ("matches_reference", "samples_are_independent", "ignores_memory_layout", "is_deterministic"):
        check_layer(masked_zero_spec, [prop], settings=CI_LIKE)
    assert "outside the error bound" in caught(dataclasses.replace(masked_zero_spec, name="MaskIgnored", module=MaskIgnored), "matches_reference")


def test_a_tuple_output_without_a_selection_is_a_spec_error_naming_output():
    from tests.test_torch_layer_specs import attention_spec

    with pytest.raises(SpecError, match="'output'"):
        check_layer(dataclasses.replace(attention_spec, output=None), ["spec_is_usable"], settings=CI_LIKE)


# -- initialization facts and gradient messages ------------------------------------------


class ZeroWeightBatchNorm(nn.BatchNorm1d):
    """The wrong initialization constant: zeros for ones."""

    def reset_parameters(self):
        super().reset_parameters()
        if self.affine:
            nn.init.zeros_(self.weight)


def identity_linear(features, **factory):
    linear = nn.Linear(features, features, bias=False, **factory)
    nn.init.eye_(linear.weight)
    return linear


eye_spec = LayerSpec(
    name="IdentityLinear",
    module=identity_linear,
    constructor_args=st.fixed_dictionaries({"features": st.integers(1, 5)}),
    input_event_shape=lambda args: (args["features"],),
    parameter_init={"weight": Eye()},
)


def test_exact_initialization_facts_are_checked_exactly():
    message = caught(dataclasses.replace(batch_norm_spec, name="ZeroWeightBatchNorm", module=ZeroWeightBatchNorm), "initialized_from_declared_distribution")
    assert "weight is not initialized to Constant(value=1.0)" in message
    check_layer(eye_spec, ["initialized_from_declared_distribution"], settings=CI_LIKE)
    assert "not initialized to Constant(value=1.0)" in caught(
        dataclasses.replace(eye_spec, name="NotOnes", parameter_init={"weight": ones()}), "initialized_from_declared_distribution"
    )


class RootOfMagnitude(nn.Module):
    """sqrt(|x|): finite outputs, an infinite slope at 0 (a non-finite gradient, nothing detached)."""

    def forward(self, x):
        return x.abs().sqrt()


def test_the_detach_hint_is_given_for_missing_gradients_only():
    overflowing = LayerSpec(name="RootOfMagnitude", module=RootOfMagnitude, factory_kwargs=False)
    message = caught(overflowing, "gradient_flow")
    assert "non-finite gradient: input" in message and ".data" not in message
    assert ".data/.detach()" in caught(TEXTBOOK, "gradient_flow")
