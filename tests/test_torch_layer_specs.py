"""torch.nn's own stochastic, batch-coupled, integer-input and multi-input layers, each in
one short spec, pass every property that applies to them (torch's modules are correct by
definition: a failure here is the framework's bug); broken variants of them are caught.

Run as ``check_layer(spec, settings=...)`` with the ``ci`` profile's examples, one test per
(layer, property), so pytest-xdist spreads them.
"""

import dataclasses
import math

import pytest
import torch
from hypothesis import Phase, settings, strategies as st
from torch import nn

from properties import LayerSpec, SpecError, check_layer, registered_properties, tolerances as tol
from properties.distributions import Uniform, ones, standard_normal, zeros
from properties.runner import why_not_run
from properties.cases import LayerCase
from properties.spec import ExpectedFailure
from properties.strategies import TensorRecipe
from tests import torch_zoo_more as more
from tests.torch_zoo import ZOO
from properties.plugin import CI_EXAMPLES

CI_LIKE = settings(max_examples=CI_EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True)
# For broken variants that fail on every input: shrinking such a failure can cost minutes.
UNSHRUNK = settings(CI_LIKE, phases=[Phase.generate])

# Dropout: random in train mode (the same seed gives the same mask), the identity in eval.
dropout_spec = LayerSpec(
    name="Dropout",
    module=nn.Dropout,
    factory_kwargs=False,
    constructor_args=st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.25, 0.5, 1.0])}),
    batch_dims=(0, 4),
    stochastic=True,
    per_sample=True,
    reference=lambda module, x: x,  # eval mode: the identity
)

# BatchNorm1d couples the batch and, in train mode, needs two samples per channel.
batch_norm_spec = LayerSpec(
    name="BatchNorm1d",
    module=nn.BatchNorm1d,
    constructor_args=st.fixed_dictionaries({"num_features": st.integers(1, 6), "affine": st.booleans()}),
    input_event_shape=lambda args: (args["num_features"],),
    batch_dims=(1, 1),
    batch_sides={0: (2, 4)},  # a batch of one raises in train mode: never drawn
    train_eval_differ=True,
    parameter_shapes=lambda args: {"weight": (args["num_features"],), "bias": (args["num_features"],)} if args["affine"] else {},
    parameter_init=lambda args: {"running_mean": zeros(), "running_var": ones()}
    | ({"weight": ones(), "bias": zeros()} if args["affine"] else {}),
)

# Embedding takes indices in [0, num_embeddings): an exact lookup.
embedding_spec = LayerSpec(
    name="Embedding",
    module=nn.Embedding,
    constructor_args=st.fixed_dictionaries({"num_embeddings": st.integers(1, 8), "embedding_dim": st.integers(1, 4)}),
    input_dtype=torch.long,
    input_range=lambda args: (0, args["num_embeddings"]),
    output_event_shape=lambda args: (args["embedding_dim"],),
    per_sample=True,
    reference=lambda module, indices: tol.exact(module.weight.detach().cpu()[indices.value.long()]),
    parameter_shapes=lambda args: {"weight": (args["num_embeddings"], args["embedding_dim"])},
    parameter_init={"weight": standard_normal()},
)


def _xavier(args):  # nn.init.xavier_uniform_ of the (3E, E) input projection
    return Uniform(-math.sqrt(6 / (4 * args["embed_dim"])), math.sqrt(6 / (4 * args["embed_dim"])))


# MultiheadAttention: query, key and value (self-attention on another key and value), a tuple out.
attention_spec = LayerSpec(
    name="MultiheadAttention",
    module=nn.MultiheadAttention,
    constructor_args=st.fixed_dictionaries({"embed_dim": st.sampled_from([2, 4]), "num_heads": st.sampled_from([1, 2]), "batch_first": st.just(True)}),
    input_event_shape=lambda args: (args["embed_dim"],),
    batch_dims=(1, 2),  # (L, E) or (N, L, E)
    allows_empty=False,  # an empty sequence has no attention weights to normalize
    inputs=lambda args, query, make: ((query, make(query.shape), make(query.shape)), {"need_weights": False}),
    output=0,  # (attn_output, attn_weights)
    input_limit=16.0,  # scores grow as |x|^2: at float16's limits they overflow (NaN), a range, not a bug
    supports_gradgrad=False,  # CPU flash attention (need_weights=False) has no double backward
    parameter_init=lambda args: {"in_proj_weight": _xavier(args), "in_proj_bias": zeros(), "out_proj.bias": zeros()},
)

TORCH_SPECS = (dropout_spec, batch_norm_spec, embedding_spec, attention_spec)
CASES = [
    (spec, prop.name)
    for spec in TORCH_SPECS
    for prop in registered_properties()
    if why_not_run(prop, spec) is None
]


@pytest.mark.parametrize("spec, prop", CASES, ids=[f"{s.name}-{p}" for s, p in CASES])
def test_torch_layers_pass_every_property_that_applies(spec, prop):
    # The loaded profile: ci's examples in CI, random ones under the soak command's seeds.
    check_layer(spec, [prop], settings=settings(settings.default, database=None))


# GroupNorm needs its batch dimension: (N, C, L) only, never (C, L).
group_norm_spec = LayerSpec(
    name="GroupNorm",
    module=nn.GroupNorm,
    constructor_args=st.sampled_from([{"num_groups": 1, "num_channels": 2}, {"num_groups": 2, "num_channels": 4}]),
    input_event_shape=lambda args: (args["num_channels"], 3),
    batch_dims=(1, 1),
    per_sample=True,
    parameter_shapes=lambda args: {"weight": (args["num_channels"],), "bias": (args["num_channels"],)},
    parameter_init={"weight": ones(), "bias": zeros()},
)


class _GroupNormSeeingTheBatch(nn.GroupNorm):
    def forward(self, x):
        return super().forward(x) + x.mean(0, keepdim=True)  # each sample's output depends on the others


def test_samples_are_compared_only_in_shapes_the_spec_admits():
    """GroupNorm's samples are compared as batches of one, never unbatched (the property once
    fed it a (C, L) input and reported torch's refusal as the layer's failure); a variant
    whose samples see each other is still caught."""
    check_layer(group_norm_spec, ["samples_are_independent"], settings=CI_LIKE)
    leaky = dataclasses.replace(group_norm_spec, name="GroupNormSeeingTheBatch", module=_GroupNormSeeingTheBatch)
    with pytest.raises(AssertionError, match="as a batch of one vs in the batch"):
        check_layer(leaky, ["samples_are_independent"], settings=CI_LIKE)


def test_a_layer_without_second_derivatives_is_told_which_spec_field_says_so():
    """CPU flash attention (MultiheadAttention with need_weights=False) has no double
    backward: torch's error becomes a failure that names supports_gradgrad."""
    claims_gradgrad = dataclasses.replace(attention_spec, supports_gradgrad=True)
    with pytest.raises(AssertionError, match="declare supports_gradgrad=False in its spec"):
        check_layer(claims_gradgrad, ["second_derivatives_match_finite_differences"], settings=CI_LIKE)


# Upsample: torch 2.13's meta kernel raises TypeError on an empty batch (its own bug).
upsample_spec = LayerSpec(
    name="Upsample",
    module=nn.Upsample,
    factory_kwargs=False,
    constructor_args=st.sampled_from([{"scale_factor": 2.0, "mode": "nearest"}, {"scale_factor": 2.0, "mode": "linear"}]),
    input_event_shape=(2, 3),
    batch_dims=(1, 1),
    per_sample=True,
)


class _UpsampleWithAFixedDeviceTensor(nn.Upsample):
    def forward(self, x):
        return super().forward(x) + torch.zeros(2 * x.shape[-1])  # always on the CPU


def test_an_empty_input_on_the_meta_device_makes_no_claim():
    """torch's meta kernels are not all written for empty tensors (nn.Upsample's raises on an
    empty batch): no claim there; a layer that creates a tensor on a fixed device is still caught."""
    check_layer(upsample_spec, ["runs_on_the_meta_device"], settings=CI_LIKE)
    fixed = dataclasses.replace(upsample_spec, name="UpsampleWithAFixedDeviceTensor", module=_UpsampleWithAFixedDeviceTensor)
    with pytest.raises(AssertionError, match="on the meta device"):
        check_layer(fixed, ["runs_on_the_meta_device"], settings=CI_LIKE)


# LSTM: its forward is overloaded, so torch.jit.script gives a module without forward.
lstm_spec = LayerSpec(
    name="LSTM",
    module=nn.LSTM,
    constructor_args={"input_size": 2, "hidden_size": 2, "batch_first": True},
    input_event_shape=(3, 2),
    batch_dims=(1, 1),
    output=0,  # (output, (h_n, c_n))
)


def test_a_scripted_layer_without_forward_is_told_why_and_what_to_declare():
    """torch.jit.script(nn.LSTM) has forward__0 and forward__1 and no forward: the failure says
    so (not an AttributeError from the call) and how to declare it; declared, it is an xfail."""
    with pytest.raises(AssertionError, match=r"overloaded forward .* declare it an expected failure"):
        check_layer(lstm_spec, ["matches_torchscript"], settings=UNSHRUNK)
    declared = dataclasses.replace(
        lstm_spec, expected_failures=[ExpectedFailure(property="matches_torchscript", reason="overloaded forward")]
    )
    check_layer(declared, ["matches_torchscript"], settings=UNSHRUNK)


# LPPool1d raises x to the power p in the working dtype: float16 squares overflow above 256.
lp_pool_spec = LayerSpec(
    name="LPPool1d",
    module=nn.LPPool1d,
    factory_kwargs=False,
    constructor_args={"norm_type": 2, "kernel_size": 2},
    input_event_shape=(2, 4),
    batch_dims=(1, 1),
    per_sample=True,
    accumulation="working",
)


def test_a_layer_computing_in_the_working_dtype_declares_it_and_gets_no_overflow_alarm():
    """finite_output holds torch's LPPool1d, declared accumulation="working", to inputs whose
    squares fit float16; undeclared, its overflow is reported with the field that says so."""
    check_layer(lp_pool_spec, ["finite_output"], settings=CI_LIKE)
    undeclared = dataclasses.replace(lp_pool_spec, accumulation="torch")
    with pytest.raises(AssertionError, match='inf/NaN where the exact result fits .* declares accumulation="working"'):
        check_layer(undeclared, ["finite_output"], settings=UNSHRUNK)


# Dropout2d keeps or drops whole channels: one draw per (sample, channel), shared along (H, W).
dropout2d_spec = LayerSpec(
    name="Dropout2d",
    module=nn.Dropout2d,
    factory_kwargs=False,
    constructor_args=st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0])}),
    input_event_shape=(3, 4, 4),
    batch_dims=(1, 1),
    stochastic=True,
    per_sample=True,
    reference=lambda module, x: x,  # eval mode: the identity
    dropout_probability="p",
    dropout_mask_shared_along=(-2, -1),
)
DROPOUT_LAWS = ["same_seed_same_mask", "identity_in_eval_mode", "dropout_preserves_the_expectation"]


def test_channel_dropout_laws_count_independent_draws_not_elements():
    """The dropout laws once counted a channel's 16 elements as 16 draws: torch's Dropout2d
    failed the keep-rate test and the two-seeds test. Declared, the draws are channels; a
    layer declared so that drops elements one by one, or that is undeclared, is told."""
    check_layer(dropout2d_spec, DROPOUT_LAWS, settings=CI_LIKE)
    elementwise = dataclasses.replace(dropout2d_spec, name="DropoutDeclaredPerChannel", module=nn.Dropout)
    with pytest.raises(AssertionError, match="partly kept and partly dropped"):
        check_layer(elementwise, ["dropout_preserves_the_expectation"], settings=UNSHRUNK)
    big_channels = dataclasses.replace(
        dropout2d_spec, dropout_mask_shared_along=(), input_event_shape=(1, 8, 8), allows_empty=False
    )
    with pytest.raises(AssertionError, match="declares the dims one draw covers: dropout_mask_shared_along"):
        check_layer(big_channels, ["dropout_preserves_the_expectation"], settings=UNSHRUNK)


def test_dropout_mask_shared_along_is_checked():
    with pytest.raises(SpecError, match="dropout_mask_shared_along.*negative dims"):
        dataclasses.replace(dropout2d_spec, dropout_mask_shared_along=(2, 3))
    with pytest.raises(SpecError, match="dropout_mask_shared_along.*negative dims"):
        dataclasses.replace(dropout2d_spec, dropout_mask_shared_along=-1)
    with pytest.raises(SpecError, match="beyond the input's event shape"):
        dataclasses.replace(dropout2d_spec, dropout_mask_shared_along=(-4, -1))
    with pytest.raises(SpecError, match="without dropout_probability"):
        dataclasses.replace(dropout2d_spec, dropout_probability=None)


# Softmax over the batch dim: an empty batch is an empty softmax.
softmax_dim0_spec = LayerSpec(
    name="SoftmaxDim0",
    module=nn.Softmax,
    factory_kwargs=False,
    constructor_args={"dim": 0},
    input_event_shape=(3,),
    batch_dims=(0, 2),
    nonnegative_output=True,
    reference=lambda module, x: tol.softmax(x, 0),
    sums_to_one=(0,),
)


def test_a_reference_reducing_an_empty_dim_is_not_blamed():
    check_layer(softmax_dim0_spec, ["matches_reference", "rows_sum_to_one", "handles_degenerate_inputs"], settings=CI_LIKE)


# LazyLinear learns in_features from its first call.
lazy_linear_spec = LayerSpec(
    name="LazyLinear",
    module=nn.LazyLinear,
    constructor_args=st.fixed_dictionaries({"out_features": st.integers(1, 3)}),
    input_event_shape=(3,),
    per_sample=True,
    output_event_shape=lambda args: (args["out_features"],),
    parameter_shapes=lambda args: {"weight": (args["out_features"], 3), "bias": (args["out_features"],)},
    parameter_init={"weight": Uniform(-1 / math.sqrt(3), 1 / math.sqrt(3)), "bias": Uniform(-1 / math.sqrt(3), 1 / math.sqrt(3))},
)


def test_a_lazy_layer_is_initialized_by_a_seeded_dry_run():
    """The properties once read a lazy module's parameters before any call (uninitialized:
    eight of them raised); now each build runs the drawn input through it once, seeded."""
    check_layer(
        lazy_linear_spec,
        ["declares_its_parameters", "initialized_from_declared_distribution", "honours_factory_kwargs",
         "gradients_match_finite_differences", "matches_torchscript", "behaves_the_same_over_time"],
        settings=CI_LIKE,
    )
    recipe = TensorRecipe((4, 3), torch.float32, "cpu", "ordinary", 1.0, 0, None, (), torch.finfo(torch.float32).max)
    case = LayerCase(lazy_linear_spec, {"out_features": 2}, recipe, module_seed=5)
    first, again = case.build(), case.build()
    assert torch.equal(first.weight, again.weight) and first.weight.shape == (2, 3)


# PixelShuffle: torch 2.13's backward of an empty batch returns a gradient of the wrong shape.
pixel_shuffle_spec = LayerSpec(
    name="PixelShuffle",
    module=nn.PixelShuffle,
    factory_kwargs=False,
    constructor_args={"upscale_factor": 2},
    input_event_shape=(4, 2, 2),
    batch_dims=(1, 1),
    per_sample=True,
    output_event_shape=(1, 4, 4),
)


def test_a_backward_that_raises_is_the_layers_failure_not_a_crash():
    """torch's PixelShuffle raises in backward on an empty batch (torch's bug): reported as
    gradient_flow's failure on the layer with the input, not as autograd's bare RuntimeError."""
    with pytest.raises(AssertionError, match=r"gradient_flow failed on PixelShuffle: backward raised RuntimeError on a valid input \(shape \(0, 4, 2, 2\)"):
        check_layer(pixel_shuffle_spec, ["gradient_flow"], settings=UNSHRUNK)
    check_layer(dataclasses.replace(pixel_shuffle_spec, allows_empty=False), ["gradient_flow"], settings=CI_LIKE)


@pytest.mark.parametrize("spec", [*ZOO, *more.ZOO], ids=[spec.name for spec in [*ZOO, *more.ZOO]])
def test_the_torch_zoo_stays_usable(spec):
    """tests/torch_zoo.py and torch_zoo_more.py run by name only (about 20 and 15 minutes): here, in the gate, their specs are
    still valid and each layer runs with its declared shapes, so it cannot rot unseen."""
    check_layer(spec, ["keeps_dtype_device_and_declared_shape"], settings=settings(CI_LIKE, max_examples=5))


def test_an_exact_result_beyond_the_dtype_is_no_claim_for_finite_output():
    """KLDivLoss(log_target=True) computes exp(target) * (target - input): where exp(target)
    overflows even in float64 the exact result is inf, and finite_output once owed a finite one."""
    check_layer(more.kl_div_loss, ["finite_output"], settings=CI_LIKE)


def test_a_tuple_argument_is_sliced_with_the_batch():
    """nn.LSTMCell(x, (h, c)): samples_are_independent once sliced x but passed (h, c) whole, so a
    single sample met a batch of states (torch raised, or crashed where N == hidden_size)."""
    check_layer(more.lstm_cell, ["samples_are_independent"], settings=CI_LIKE)


def test_further_inputs_move_to_float64_with_the_layer():
    """EmbeddingBag(indices, per_sample_weights=w): after .to(float64), w was still made in
    float32 (the case's dtype) and torch rightly refused the mix."""
    check_layer(more.embedding_bag_weighted, ["tensors_are_registered"], settings=CI_LIKE)


def test_the_stateful_reference_sees_the_state_after_the_call():
    """spectral_norm's train-mode call advances its power iteration, then uses it: the
    reference from the state before the call was off by 1e-12 in float64 (matches_reference
    takes the state after the call; both now do)."""
    check_layer(more.spectral_norm_linear, ["behaves_the_same_over_time", "matches_reference"], settings=CI_LIKE)


def test_a_constructor_that_fails_on_the_meta_device_is_the_layers_failure():
    """torch's orthogonal() cannot be built with device="meta": that is the layer's failure
    (declarable), not a SpecError, since the spec builds it on the CPU."""
    undeclared = dataclasses.replace(more.orthogonal_linear, expected_failures=[])
    for prop in ("runs_on_the_meta_device", "honours_factory_kwargs"):
        with pytest.raises(AssertionError, match=r"its constructor raised RuntimeError with device='meta'") as failure:
            check_layer(undeclared, [prop], settings=UNSHRUNK)
        assert not isinstance(failure.value, SpecError)
    check_layer(more.orthogonal_linear, ["runs_on_the_meta_device", "honours_factory_kwargs"], settings=CI_LIKE)


def test_a_gradient_past_an_overflowed_output_is_no_claim():
    """KLDivLoss(log_target=True)'s gradient is -exp(target): in float16 it overflows exactly where
    the output exp(target) * (target - input) does, and gradient_flow once blamed the layer."""
    check_layer(dataclasses.replace(more.kl_div_loss, dtypes=(torch.float16,)), ["gradient_flow"], settings=CI_LIKE)


class _CallCounting(nn.Module):
    """Adds how often it has been called: each call advances the state its output uses, as
    spectral_norm's power iteration and Embedding(max_norm=)'s renormalization do."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return x + self.calls


def test_variants_are_compared_from_the_same_state():
    """Eager mode ran first and advanced the state, so a compiled Embedding(max_norm=) in float16
    renormalized its rows a second time; each variant now starts from the state eager mode saw."""
    # A reference (the state after one call), since a float64 twin's agreement bound absorbs a whole call.
    spec = LayerSpec(name="CallCounting", module=_CallCounting, factory_kwargs=False,
                     reference=lambda m, x: x + tol.exact(m.calls))
    check_layer(spec, ["matches_torchscript", "matches_torch_jit_trace", "matches_torch_compile"], settings=CI_LIKE)
