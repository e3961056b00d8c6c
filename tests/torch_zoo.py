"""The torch zoo: 73 torch.nn modules and variants, each in a short spec, through every property that
applies (torch's modules are correct by definition: a failure is the framework's false alarm,
or a slip in the spec here).

Not collected by ``pytest`` (its name does not start with ``test_``): it takes about 20 minutes
on 2 cores. Run it by name, under the soak command (docs/reliability.md, section torch-zoo):
``python -m properties.soak --seeds 1 --nightly-seeds 0 --update-docs=torch-zoo -- tests/torch_zoo.py -n auto``.
Where torch itself is wrong or cannot (an empty batch, a missing double backward), the spec
says so in a comment.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import settings, strategies as st
from torch import nn

from properties import LayerSpec, check_layer, registered_properties, tolerances as tol
from properties.distributions import Constant, Uniform, ones, standard_normal, zeros
from properties.runner import why_not_run
from properties.spec import ExpectedFailure

# torch.jit.script of torch's RNNs has forward__0 and forward__1 (its overloads) and no forward.
_NO_SCRIPTED_FORWARD = ExpectedFailure(property="matches_torchscript", reason="overloaded forward: no scripted forward")


def _bound(fan_in):  # kaiming_uniform_(a=sqrt(5)) and the conv/linear bias: U(+-1/sqrt(fan_in))
    return Uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))


def _opmath_scalar(s, dtype):  # a Python float as torch's kernel holds it (opmath of the dtype)
    return float(torch.tensor(s, dtype=tol.accumulation_dtype(dtype)))


def _pad_bounded(x, pad, mode="constant", value=0.0):
    if mode == "constant":
        return tol.Bounded(F.pad(x.value, pad, value=value), F.pad(x.error, pad), F.pad(x.representable, pad, value=True),
                           x.dtype, x.device)
    # non-constant modes move elements: apply to value/error/representable alike
    # (F.pad reflect/replicate/circular needs float; do it on doubles and re-threshold the mask)
    return tol.Bounded(F.pad(x.value, pad, mode=mode), F.pad(x.error, pad, mode=mode),
                       F.pad(x.representable.double(), pad, mode=mode) > 0.5, x.dtype, x.device)


def _pool_out(n, k, s, p, d, ceil):
    num = n + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


# ---------------------------------------------------------------- elementwise
relu6 = LayerSpec(name="ReLU6", module=nn.ReLU6, factory_kwargs=False, per_sample=True, nonnegative_output=True,
                  reference=lambda m, x: tol.clamp(x, 0.0, 6.0))

rrelu = LayerSpec(
    name="RReLU", module=nn.RReLU, factory_kwargs=False,
    constructor_args=st.sampled_from([{"lower": 1 / 8, "upper": 1 / 3}, {"lower": 0.1, "upper": 0.3}]),
    per_sample=True, stochastic=True, train_eval_differ=True,
    dtypes=(torch.float32, torch.float64, torch.bfloat16),  # CPU rrelu_with_noise (train) has no float16 kernel
    # eval: leaky_relu with slope (lower + upper) / 2
    reference=lambda m, x: tol.where(x.value > 0, x, tol.multiply(x, _opmath_scalar((m.lower + m.upper) / 2, x.dtype))),
)

threshold = LayerSpec(
    name="Threshold", module=nn.Threshold, factory_kwargs=False,
    constructor_args=st.sampled_from([{"threshold": 0.5, "value": -2.0}, {"threshold": -1.0, "value": 0.0}]),
    per_sample=True,
    reference=lambda m, x: tol.where(x.value > m.threshold, x, m.value),
)

softshrink = LayerSpec(
    name="Softshrink", module=nn.Softshrink, factory_kwargs=False,
    constructor_args=st.sampled_from([{"lambd": 0.5}, {"lambd": 1.0}]), per_sample=True,
    reference=lambda m, x: tol.where(x.value > m.lambd, x - m.lambd, tol.where(x.value < -m.lambd, x + m.lambd, 0.0)),
)

hardshrink = LayerSpec(
    name="Hardshrink", module=nn.Hardshrink, factory_kwargs=False,
    constructor_args=st.sampled_from([{"lambd": 0.5}, {"lambd": 1.0}]), per_sample=True,
    reference=lambda m, x: tol.where(x.value.abs() > m.lambd, x, 0.0),
)

hardsigmoid = LayerSpec(
    name="Hardsigmoid", module=nn.Hardsigmoid, factory_kwargs=False, per_sample=True, nonnegative_output=True,
    supports_gradgrad=False,  # torch: derivative for aten::hardsigmoid_backward is not implemented
    reference=lambda m, x: tol.divide(tol.clamp(x + 3.0, 0.0, 6.0), 6.0),
)

softmax2d = LayerSpec(
    name="Softmax2d", module=nn.Softmax2d, factory_kwargs=False, input_event_shape=(3, 2, 2), batch_dims=(0, 1),
    per_sample=True, nonnegative_output=True, reference=lambda m, x: tol.softmax(x, -3),
    sums_to_one=(-3,), invariances=("shift",),
)

softmax_dim0 = LayerSpec(
    name="SoftmaxDim0", module=nn.Softmax, factory_kwargs=False, constructor_args={"dim": 0},
    input_event_shape=(3,), batch_dims=(0, 2), per_sample=False, nonnegative_output=True,
    reference=lambda m, x: tol.softmax(x, 0), sums_to_one=(0,), invariances=("shift",),
)

# ---------------------------------------------------------------- pooling
adaptive_max_pool1d = LayerSpec(
    name="AdaptiveMaxPool1d", module=nn.AdaptiveMaxPool1d, factory_kwargs=False,
    constructor_args=st.fixed_dictionaries({"output_size": st.integers(1, 3)}),
    input_event_shape=(2, 5), batch_dims=(0, 1), per_sample=True,
    output_event_shape=lambda a: (2, a["output_size"]),
)


def _maxpool2d_args():
    return st.fixed_dictionaries({"kernel_size": st.integers(2, 3), "stride": st.integers(1, 2),
                                  "dilation": st.integers(1, 2), "ceil_mode": st.booleans()}).flatmap(
        lambda a: st.integers(0, a["kernel_size"] // 2).map(lambda p: {**a, "padding": p}))


maxpool2d = LayerSpec(
    name="MaxPool2d", module=nn.MaxPool2d, factory_kwargs=False, constructor_args=_maxpool2d_args(),
    input_event_shape=(2, 5, 5), batch_dims=(0, 1), per_sample=True,
    output_event_shape=lambda a: (2,) + (_pool_out(5, a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"]),) * 2,
)


def _avgpool2d_args():
    return st.fixed_dictionaries({"kernel_size": st.integers(1, 3), "stride": st.integers(1, 2),
                                  "ceil_mode": st.booleans(), "count_include_pad": st.booleans(),
                                  "divisor_override": st.sampled_from([None, 2])}).flatmap(
        lambda a: st.integers(0, a["kernel_size"] // 2).map(lambda p: {**a, "padding": p}))


avgpool2d = LayerSpec(
    name="AvgPool2d", module=nn.AvgPool2d, factory_kwargs=False, constructor_args=_avgpool2d_args(),
    input_event_shape=(2, 4, 5), batch_dims=(0, 1), per_sample=True,
    output_event_shape=lambda a: (2, _pool_out(4, a["kernel_size"], a["stride"], a["padding"], 1, a["ceil_mode"]),
                                  _pool_out(5, a["kernel_size"], a["stride"], a["padding"], 1, a["ceil_mode"])),
)

adaptive_avg_pool2d = LayerSpec(
    name="AdaptiveAvgPool2d", module=nn.AdaptiveAvgPool2d, factory_kwargs=False,
    constructor_args=st.sampled_from([{"output_size": (2, 3)}, {"output_size": 1}, {"output_size": (4, 5)}]),
    input_event_shape=(2, 4, 5), batch_dims=(0, 1), per_sample=True,
    output_event_shape=lambda a: (2,) + (a["output_size"] if isinstance(a["output_size"], tuple) else (a["output_size"],) * 2),
)

# FractionalMaxPool2d draws its pooling regions from torch's RNG on every call (train and eval alike).
fractional_max_pool2d = LayerSpec(
    name="FractionalMaxPool2d", module=nn.FractionalMaxPool2d, factory_kwargs=False,
    constructor_args={"kernel_size": 2, "output_size": 3},
    input_event_shape=(2, 5, 5), batch_dims=(0, 1), per_sample=False, stochastic=True,
    output_event_shape=(2, 3, 3),
)

# ---------------------------------------------------------------- padding / reshaping
zero_pad2d = LayerSpec(
    name="ZeroPad2d", module=nn.ZeroPad2d, factory_kwargs=False,
    constructor_args=st.sampled_from([{"padding": 1}, {"padding": (1, 0, 2, 1)}, {"padding": (1, -1, 0, -2)}]),
    input_event_shape=(2, 3, 3), batch_dims=(0, 1), per_sample=True, linear_in_input=True,
    output_event_shape=lambda a: (2,) + ((5, 5) if a["padding"] == 1 else
                                        (3 + a["padding"][2] + a["padding"][3], 3 + a["padding"][0] + a["padding"][1])),
    reference=lambda m, x: _pad_bounded(x, m.padding),
)

constant_pad1d = LayerSpec(
    name="ConstantPad1d", module=nn.ConstantPad1d, factory_kwargs=False,
    constructor_args=st.sampled_from([{"padding": 2, "value": 3.5}, {"padding": (0, 1), "value": -1.0}]),
    input_event_shape=(2, 3), batch_dims=(0, 1), per_sample=True,
    output_event_shape=lambda a: (2, 3 + (4 if a["padding"] == 2 else 1)),
    reference=lambda m, x: _pad_bounded(x, m.padding, value=m.value),
)


def _pad1d(cls, name, paddings, side=4):
    return LayerSpec(
        name=name, module=cls, factory_kwargs=False,
        constructor_args=st.sampled_from([{"padding": p} for p in paddings]),
        input_event_shape=(2, side), batch_dims=(0, 1), per_sample=True, linear_in_input=True,
        output_event_shape=lambda a: (2, side + (2 * a["padding"] if isinstance(a["padding"], int) else sum(a["padding"]))),
        reference=lambda m, x: _pad_bounded(x, m.padding, mode={"ReflectionPad1d": "reflect", "ReplicationPad1d": "replicate",
                                                               "CircularPad1d": "circular"}[name]),
    )


reflection_pad1d = _pad1d(nn.ReflectionPad1d, "ReflectionPad1d", [2, (3, 1)])
replication_pad1d = _pad1d(nn.ReplicationPad1d, "ReplicationPad1d", [2, (0, 5)])
circular_pad1d = _pad1d(nn.CircularPad1d, "CircularPad1d", [2, (4, 1)])

flatten = LayerSpec(
    name="Flatten", module=nn.Flatten, factory_kwargs=False, constructor_args={"start_dim": -2, "end_dim": -1},
    input_event_shape=(2, 3), batch_dims=(0, 3), per_sample=True, output_event_shape=(6,), linear_in_input=True,
    reference=lambda m, x: x.map(lambda t: t.flatten(-2)),
)

flatten_default = LayerSpec(
    name="FlattenDefault", module=nn.Flatten, factory_kwargs=False,
    input_event_shape=(2, 3), batch_dims=(1, 1), per_sample=True, output_event_shape=(6,),
    reference=lambda m, x: x.map(lambda t: t.flatten(1)),
)

unflatten = LayerSpec(
    name="Unflatten", module=nn.Unflatten, factory_kwargs=False, constructor_args={"dim": -1, "unflattened_size": (2, 3)},
    input_event_shape=(6,), batch_dims=(0, 3), per_sample=True, output_event_shape=(2, 3), linear_in_input=True,
    reference=lambda m, x: x.map(lambda t: t.unflatten(-1, (2, 3))),
)

identity = LayerSpec(
    name="Identity", module=nn.Identity, factory_kwargs=False, per_sample=True, linear_in_input=True,
    reference=lambda m, x: x, invariances=(),
)

channel_shuffle = LayerSpec(
    name="ChannelShuffle", module=nn.ChannelShuffle, factory_kwargs=False,
    constructor_args=st.sampled_from([{"groups": 2}, {"groups": 4}]),
    input_event_shape=(4, 2, 2), batch_dims=(1, 1), per_sample=True,  # torch takes dim 1 as channels
    reference=lambda m, x: x.map(lambda t: t.unflatten(-3, (m.groups, 4 // m.groups)).transpose(-4, -3).flatten(-4, -3)),
)

pixel_unshuffle = LayerSpec(
    name="PixelUnshuffle", module=nn.PixelUnshuffle, factory_kwargs=False, constructor_args={"downscale_factor": 2},
    input_event_shape=(1, 4, 4), batch_dims=(0, 2), per_sample=True, output_event_shape=(4, 2, 2),
    allows_empty=False,  # torch 2.13 CPU bug: pixel_unshuffle of an empty batch returns the input's shape
    reference=lambda m, x: x.map(lambda t: F.pixel_unshuffle(t, 2)),
)

unfold = LayerSpec(
    name="Unfold", module=nn.Unfold, factory_kwargs=False,
    constructor_args=st.sampled_from([{"kernel_size": 2}, {"kernel_size": 2, "stride": 2, "padding": 1}]),
    input_event_shape=(2, 3, 3), batch_dims=(0, 1), per_sample=True,
    output_event_shape=lambda a: (8, 4),
)

fold = LayerSpec(
    name="Fold", module=nn.Fold, factory_kwargs=False, constructor_args={"output_size": (3, 3), "kernel_size": 2},
    input_event_shape=(8, 4), batch_dims=(0, 1), per_sample=True, output_event_shape=(2, 3, 3),
    accumulation="working",  # col2im sums overlapping patches in float16 on the CPU
)

# ---------------------------------------------------------------- two inputs
cosine_similarity = LayerSpec(
    name="CosineSimilarity", module=nn.CosineSimilarity, factory_kwargs=False, constructor_args={"dim": -1},
    input_event_shape=(3,), batch_dims=(0, 2), per_sample=True, output_event_shape=(),
    inputs=lambda a, x, make: ((x, make(x.shape)), {}),
    expected_failures=[ExpectedFailure(property=p, dtypes=(torch.float16,), reason="eps=1e-8 flushes to 0 in float16: a zero vector gives 0/0 = NaN")
                       for p in ("finite_output", "gradient_flow", "handles_degenerate_inputs")],
)


def _pairwise_reference(m, x1, x2):
    d = (x1 - x2) + m.eps
    return tol.sqrt(tol.sum(d * d, -1))


pairwise_distance = LayerSpec(
    name="PairwiseDistance", module=nn.PairwiseDistance, factory_kwargs=False,
    input_event_shape=(3,), batch_dims=(0, 1), per_sample=True, output_event_shape=(), nonnegative_output=True,
    inputs=lambda a, x, make: ((x, make(x.shape)), {}), reference=_pairwise_reference,
)

# ---------------------------------------------------------------- integer input
embedding_bag = LayerSpec(
    name="EmbeddingBag", module=nn.EmbeddingBag,
    constructor_args=st.fixed_dictionaries({"num_embeddings": st.integers(1, 6), "embedding_dim": st.integers(1, 3),
                                            "mode": st.sampled_from(["sum", "mean", "max"])}),
    input_dtype=torch.long, input_range=lambda a: (0, a["num_embeddings"]),
    input_event_shape=(3,), batch_dims=(1, 1), per_sample=True,
    output_event_shape=lambda a: (a["embedding_dim"],),
    parameter_shapes=lambda a: {"weight": (a["num_embeddings"], a["embedding_dim"])},
    parameter_init={"weight": standard_normal()},
    supports_gradgrad=False,  # torch: derivative for _embedding_bag_backward is not implemented
    reference=lambda m, idx: {"sum": lambda e: tol.sum(e, -2), "mean": lambda e: tol.mean(e, -2),
                              "max": lambda e: tol.amax(e, -2)}[m.mode](tol.embedding(idx.value.long(), tol.exact(m.weight))),
)

# ---------------------------------------------------------------- convolutions
conv3d = LayerSpec(
    name="Conv3d", module=nn.Conv3d,
    constructor_args=st.fixed_dictionaries({"in_channels": st.integers(1, 2), "out_channels": st.integers(1, 2),
                                            "kernel_size": st.integers(1, 2), "padding": st.integers(0, 1)}),
    input_event_shape=lambda a: (a["in_channels"], 3, 3, 3), batch_dims=(0, 1), per_sample=True,
    output_event_shape=lambda a: (a["out_channels"],) + (3 + 2 * a["padding"] - a["kernel_size"] + 1,) * 3,
    parameter_shapes=lambda a: {"weight": (a["out_channels"], a["in_channels"]) + (a["kernel_size"],) * 3,
                                "bias": (a["out_channels"],)},
    parameter_init=lambda a: {"weight": _bound(a["in_channels"] * a["kernel_size"] ** 3),
                              "bias": _bound(a["in_channels"] * a["kernel_size"] ** 3)},
    reference=lambda m, x: tol.conv3d(x, tol.exact(m.weight), tol.exact(m.bias), padding=m.padding),
)


def _conv_transpose_reference(m, x):
    conv = tol.conv_transpose1d if isinstance(m, nn.ConvTranspose1d) else tol.conv_transpose2d
    return conv(x, tol.exact(m.weight), tol.exact(m.bias), stride=m.stride, padding=m.padding,
                output_padding=m.output_padding, groups=m.groups, dilation=m.dilation)


def _convt2d_args():
    return st.fixed_dictionaries({"in_channels": st.integers(1, 2), "out_channels": st.integers(1, 2),
                                  "kernel_size": st.integers(1, 3), "stride": st.integers(1, 2),
                                  "padding": st.integers(0, 1)}).flatmap(
        lambda a: st.integers(0, a["stride"] - 1).map(lambda op: {**a, "output_padding": op}))


def _convt_side(a, n=3):
    return (n - 1) * a["stride"] - 2 * a["padding"] + a["kernel_size"] - 1 + a["output_padding"] + 1


conv_transpose2d = LayerSpec(
    name="ConvTranspose2d", module=nn.ConvTranspose2d, constructor_args=_convt2d_args().filter(lambda a: _convt_side(a) > 0),
    input_event_shape=lambda a: (a["in_channels"], 3, 3), batch_dims=(0, 1), per_sample=True,
    output_event_shape=lambda a: (a["out_channels"], _convt_side(a), _convt_side(a)),
    parameter_shapes=lambda a: {"weight": (a["in_channels"], a["out_channels"], a["kernel_size"], a["kernel_size"]),
                                "bias": (a["out_channels"],)},
    parameter_init=lambda a: {"weight": _bound(a["out_channels"] * a["kernel_size"] ** 2),
                              "bias": _bound(a["out_channels"] * a["kernel_size"] ** 2)},
    reference=_conv_transpose_reference,
)

# ---------------------------------------------------------------- normalization


def _instance_norm_reference(m, x):
    unbatched = x.value.dim() == 3  # nn.InstanceNorm2d takes (C, H, W) as a batch of one
    w, b = (None if p is None else tol.exact(p) for p in (m.weight, m.bias))
    out = tol.instance_norm(x.map(lambda t: t[None]) if unbatched else x, weight=w, bias=b, eps=m.eps)
    return out.map(lambda t: t[0]) if unbatched else out


def _batch_norm_reference(m, x):
    w, b = (None if p is None else tol.exact(p) for p in (m.weight, m.bias))
    if m.training:
        return tol.batch_norm(x, weight=w, bias=b, training=True, eps=m.eps)
    return tol.batch_norm(x, tol.exact(m.running_mean), tol.exact(m.running_var), w, b, training=False, eps=m.eps)


instance_norm2d = LayerSpec(
    name="InstanceNorm2d", module=nn.InstanceNorm2d,
    constructor_args=st.fixed_dictionaries({"num_features": st.integers(1, 3), "affine": st.booleans()}),
    input_event_shape=lambda a: (a["num_features"], 2, 3), batch_dims=(0, 1), per_sample=True,
    parameter_shapes=lambda a: {"weight": (a["num_features"],), "bias": (a["num_features"],)} if a["affine"] else {},
    parameter_init=lambda a: {"weight": ones(), "bias": zeros()} if a["affine"] else {},
    reference=_instance_norm_reference, invariances=("shift", "scale"),
    allows_empty=False,  # torch 2.13 bug: InstanceNorm2d(affine=True) raises IndexError on an empty batch
)

instance_norm2d_tracked = LayerSpec(
    name="InstanceNorm2dTracked", module=nn.InstanceNorm2d,
    constructor_args=st.fixed_dictionaries({"num_features": st.integers(1, 3), "affine": st.booleans(),
                                            "track_running_stats": st.just(True)}),
    input_event_shape=lambda a: (a["num_features"], 2, 3), batch_dims=(0, 1), per_sample=True, train_eval_differ=True,
    allows_empty=False,  # torch 2.13 bug: InstanceNorm2d(affine=True) raises IndexError on an empty batch
    parameter_shapes=lambda a: {"weight": (a["num_features"],), "bias": (a["num_features"],)} if a["affine"] else {},
    parameter_init=lambda a: {"running_mean": zeros(), "running_var": ones()}
    | ({"weight": ones(), "bias": zeros()} if a["affine"] else {}),
)


def _layer_norm_reference(m, x):
    w = tol.exact(m.weight) if m.weight is not None else None
    b = tol.exact(m.bias) if m.bias is not None else None
    return tol.layer_norm(x, m.normalized_shape, w, b, m.eps)


layer_norm_variants = LayerSpec(
    name="LayerNormVariants", module=nn.LayerNorm,
    constructor_args=st.sampled_from([{"normalized_shape": (2, 3), "elementwise_affine": False},
                                      {"normalized_shape": (2, 3), "bias": False},
                                      {"normalized_shape": (2, 3), "elementwise_affine": True}]),
    input_event_shape=(2, 3), per_sample=True,
    parameter_shapes=lambda a: ({} if not a.get("elementwise_affine", True) else
                                {"weight": (2, 3)} | ({} if a.get("bias", True) is False else {"bias": (2, 3)})),
    parameter_init=lambda a: ({} if not a.get("elementwise_affine", True) else
                              {"weight": ones()} | ({} if a.get("bias", True) is False else {"bias": zeros()})),
    reference=_layer_norm_reference, invariances=("shift", "scale"),
)

# ---------------------------------------------------------------- dropout family
alpha_dropout = LayerSpec(
    name="AlphaDropout", module=nn.AlphaDropout, factory_kwargs=False,
    constructor_args=st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.25, 0.5])}),
    batch_dims=(1, 3), stochastic=True, per_sample=True, reference=lambda m, x: x,
)

feature_alpha_dropout = LayerSpec(
    name="FeatureAlphaDropout", module=nn.FeatureAlphaDropout, factory_kwargs=False,
    constructor_args=st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.25, 0.5])}),
    input_event_shape=(3, 4), batch_dims=(1, 1), stochastic=True, per_sample=True, reference=lambda m, x: x,
)

dropout1d = LayerSpec(
    name="Dropout1d", module=nn.Dropout1d, factory_kwargs=False,
    constructor_args=st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0])}),
    input_event_shape=(3, 8), batch_dims=(0, 1), stochastic=True, per_sample=True, reference=lambda m, x: x,
    dropout_probability="p",
    dropout_mask_shared_along=(-1,),
)

dropout2d = LayerSpec(
    name="Dropout2d", module=nn.Dropout2d, factory_kwargs=False,
    constructor_args=st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0])}),
    input_event_shape=(3, 4, 4), batch_dims=(1, 1), stochastic=True, per_sample=True, reference=lambda m, x: x,
    dropout_probability="p",
    dropout_mask_shared_along=(-2, -1),
)

# ---------------------------------------------------------------- composite / lazy


def _transformer_encoder(d_model, nhead, device=None, dtype=None):
    layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=8, dropout=0.0, batch_first=True,
                                       device=device, dtype=dtype)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


transformer_encoder = LayerSpec(
    name="TransformerEncoder", module=_transformer_encoder,
    constructor_args=st.fixed_dictionaries({"d_model": st.just(4), "nhead": st.sampled_from([1, 2])}),
    input_event_shape=(3, 4), batch_dims=(1, 1), per_sample=True, allows_empty=False, input_limit=16.0,
    supports_gradgrad=False,  # CPU flash attention: no double backward (as TransformerEncoderLayer)
)

lazy_linear = LayerSpec(
    name="LazyLinear", module=nn.LazyLinear,
    constructor_args=st.fixed_dictionaries({"out_features": st.integers(1, 3)}),
    input_event_shape=(3,), per_sample=True, output_event_shape=lambda a: (a["out_features"],),
    parameter_shapes=lambda a: {"weight": (a["out_features"], 3), "bias": (a["out_features"],)},
    parameter_init={"weight": _bound(3), "bias": _bound(3)},
)



def _recurrent(module):
    """nn.RNN, nn.GRU or nn.LSTM, batch first: the output sequence is checked (not the hidden state)."""
    return LayerSpec(
        name=module.__name__, module=module,
        constructor_args=st.fixed_dictionaries({"input_size": st.integers(1, 3), "hidden_size": st.integers(1, 3),
                                                "batch_first": st.just(True)}),
        input_event_shape=lambda a: (3, a["input_size"]), batch_dims=(1, 1), per_sample=True, output=0,
        output_event_shape=lambda a: (3, a["hidden_size"]),
        parameter_init=lambda a: {n: _bound(a["hidden_size"]) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")},
        expected_failures=[_NO_SCRIPTED_FORWARD],
    )

ZOO = [
    LayerSpec(name="Tanh", module=nn.Tanh, factory_kwargs=False, reference=lambda m, x: tol.tanh(x), per_sample=True),
    LayerSpec(name="Sigmoid", module=nn.Sigmoid, factory_kwargs=False, reference=lambda m, x: tol.sigmoid(x),
              per_sample=True, nonnegative_output=True),
    LayerSpec(
        name="LeakyReLU", module=nn.LeakyReLU, factory_kwargs=False,
        constructor_args=st.fixed_dictionaries({"negative_slope": st.sampled_from([0.01, 0.2])}),
        reference=lambda m, x: tol.where(x.value > 0, x, tol.multiply(x, m.negative_slope)), per_sample=True,
    ),
    LayerSpec(
        name="ELU", module=nn.ELU, factory_kwargs=False,
        reference=lambda m, x: tol.where(x.value > 0, x, tol.multiply(tol.expm1(x), m.alpha)), per_sample=True,
    ),
    LayerSpec(name="Hardswish", module=nn.Hardswish, factory_kwargs=False, per_sample=True),
    LayerSpec(name="Mish", module=nn.Mish, factory_kwargs=False, per_sample=True),
    LayerSpec(name="Softsign", module=nn.Softsign, factory_kwargs=False, per_sample=True),
    LayerSpec(
        name="GroupNorm", module=nn.GroupNorm,
        constructor_args=st.sampled_from([{"num_groups": 1, "num_channels": 2}, {"num_groups": 2, "num_channels": 4}]),
        input_event_shape=lambda a: (a["num_channels"], 3), batch_dims=(1, 1), per_sample=True,
        parameter_shapes=lambda a: {"weight": (a["num_channels"],), "bias": (a["num_channels"],)},
        parameter_init={"weight": ones(), "bias": zeros()},
    ),
    LayerSpec(
        name="InstanceNorm1d", module=nn.InstanceNorm1d,
        constructor_args=st.fixed_dictionaries({"num_features": st.integers(1, 3)}),
        input_event_shape=lambda a: (a["num_features"], 3), batch_dims=(1, 1), per_sample=True,
        parameter_shapes=lambda a: {}, reference=lambda m, x: tol.instance_norm(x, eps=m.eps),
    ),
    LayerSpec(
        name="BatchNorm2d", module=nn.BatchNorm2d,
        constructor_args=st.fixed_dictionaries({"num_features": st.integers(1, 3)}),
        input_event_shape=lambda a: (a["num_features"], 2, 2), batch_dims=(1, 1), batch_sides={0: (2, 3)},
        train_eval_differ=True, reference=_batch_norm_reference,
        parameter_shapes=lambda a: {"weight": (a["num_features"],), "bias": (a["num_features"],)},
        parameter_init={"weight": ones(), "bias": zeros(), "running_mean": zeros(), "running_var": ones()},
    ),
    LayerSpec(
        name="MaxPool1d", module=nn.MaxPool1d, factory_kwargs=False,
        constructor_args=st.fixed_dictionaries({"kernel_size": st.integers(1, 3)}),
        input_event_shape=lambda a: (2, 4), batch_dims=(1, 1), per_sample=True,
    ),
    LayerSpec(
        name="AvgPool1d", module=nn.AvgPool1d, factory_kwargs=False,
        constructor_args=st.fixed_dictionaries({"kernel_size": st.integers(1, 3)}),
        input_event_shape=lambda a: (2, 4), batch_dims=(1, 1), per_sample=True,
    ),
    _recurrent(nn.GRU),
    _recurrent(nn.LSTM),
    LayerSpec(
        name="TransformerEncoderLayer", module=nn.TransformerEncoderLayer,
        constructor_args=st.fixed_dictionaries({"d_model": st.just(4), "nhead": st.sampled_from([1, 2]),
                                                 "dim_feedforward": st.just(8), "dropout": st.just(0.0),
                                                 "batch_first": st.just(True)}),
        input_event_shape=(3, 4), batch_dims=(1, 1), per_sample=True, allows_empty=False, input_limit=16.0,
        supports_gradgrad=False,  # CPU flash attention has no double backward
    ),
    LayerSpec(
        name="ConvTranspose1d", module=nn.ConvTranspose1d,
        constructor_args=st.fixed_dictionaries({"in_channels": st.integers(1, 3), "out_channels": st.integers(1, 3),
                                                 "kernel_size": st.integers(1, 3)}),
        input_event_shape=lambda a: (a["in_channels"], 4), batch_dims=(1, 1), per_sample=True,
        reference=_conv_transpose_reference,
    ),
    LayerSpec(
        name="PReLU", module=nn.PReLU, parameter_shapes=lambda a: {"weight": (1,)},
        parameter_init={"weight": Constant(0.25)}, per_sample=True,
    ),
    LayerSpec(name="SELU", module=nn.SELU, factory_kwargs=False, per_sample=True),
    LayerSpec(name="CELU", module=nn.CELU, factory_kwargs=False, per_sample=True),
    LayerSpec(name="Hardtanh", module=nn.Hardtanh, factory_kwargs=False, per_sample=True),
    LayerSpec(name="Softmin", module=nn.Softmin, factory_kwargs=False, constructor_args={"dim": -1},
              input_event_shape=(3,), batch_dims=(0, 2), per_sample=True, nonnegative_output=True),
    LayerSpec(name="GLU", module=nn.GLU, factory_kwargs=False, input_event_shape=(4,), per_sample=True,
              output_event_shape=(2,)),
    LayerSpec(name="LogSigmoid", module=nn.LogSigmoid, factory_kwargs=False, per_sample=True),
    LayerSpec(name="Tanhshrink", module=nn.Tanhshrink, factory_kwargs=False, per_sample=True),
    _recurrent(nn.RNN),
    LayerSpec(name="AdaptiveAvgPool1d", module=nn.AdaptiveAvgPool1d, factory_kwargs=False,
              constructor_args={"output_size": 2}, input_event_shape=(2, 5), batch_dims=(1, 1), per_sample=True,
              output_event_shape=(2, 2)),
    LayerSpec(name="LPPool1d", module=nn.LPPool1d, factory_kwargs=False,
              constructor_args={"norm_type": 2, "kernel_size": 2}, input_event_shape=(2, 4), batch_dims=(1, 1),
              per_sample=True, accumulation="working"),  # x ** p in the working dtype
    LayerSpec(name="Upsample", module=nn.Upsample, factory_kwargs=False,
              constructor_args=st.sampled_from([{"scale_factor": 2.0, "mode": "nearest"}, {"scale_factor": 2.0, "mode": "linear"}]),
              input_event_shape=(2, 3), batch_dims=(1, 1), per_sample=True),
    LayerSpec(name="PixelShuffle", module=nn.PixelShuffle, factory_kwargs=False, constructor_args={"upscale_factor": 2},
              input_event_shape=(4, 2, 2), batch_dims=(0, 1), per_sample=True, output_event_shape=(1, 4, 4),
              allows_empty=False),  # torch 2.13 bug: its backward of an empty batch has the wrong shape
    LayerSpec(name="LocalResponseNorm", module=nn.LocalResponseNorm, factory_kwargs=False, constructor_args={"size": 2},
              input_event_shape=(3, 4), batch_dims=(1, 1), per_sample=True),
    LayerSpec(name="Conv2dGrouped", module=nn.Conv2d,
              constructor_args=st.fixed_dictionaries({"in_channels": st.just(4), "out_channels": st.just(4),
                                                       "kernel_size": st.integers(1, 2), "groups": st.sampled_from([1, 2, 4]),
                                                       "dilation": st.integers(1, 2), "padding": st.integers(0, 1)}),
              input_event_shape=(4, 3, 3), batch_dims=(0, 1), per_sample=True),
    LayerSpec(name="TransformerDecoderLayer", module=nn.TransformerDecoderLayer,
              constructor_args=st.fixed_dictionaries({"d_model": st.just(4), "nhead": st.sampled_from([1, 2]),
                                                       "dim_feedforward": st.just(8), "dropout": st.just(0.0),
                                                       "batch_first": st.just(True)}),
              input_event_shape=(3, 4), batch_dims=(1, 1), per_sample=True, allows_empty=False, input_limit=16.0,
              inputs=lambda a, x, make: ((x, make(x.shape)), {}), supports_gradgrad=False),
    LayerSpec(name="Bilinear", module=nn.Bilinear,
              constructor_args=st.fixed_dictionaries({"in1_features": st.integers(1, 3), "in2_features": st.just(2),
                                                       "out_features": st.integers(1, 3)}),
              input_event_shape=lambda a: (a["in1_features"],), batch_dims=(1, 2), per_sample=True,
              output_event_shape=lambda a: (a["out_features"],),
              inputs=lambda a, x, make: ((x, make((*x.shape[:-1], 2))), {})),
    relu6, rrelu, threshold, softshrink, hardshrink, hardsigmoid, softmax2d, softmax_dim0,
    adaptive_max_pool1d, maxpool2d, avgpool2d, adaptive_avg_pool2d, fractional_max_pool2d,
    zero_pad2d, constant_pad1d, reflection_pad1d, replication_pad1d, circular_pad1d,
    flatten, flatten_default, unflatten, identity, channel_shuffle, pixel_unshuffle, unfold, fold,
    cosine_similarity, pairwise_distance, embedding_bag, conv3d, conv_transpose2d,
    instance_norm2d, instance_norm2d_tracked, layer_norm_variants,
    alpha_dropout, feature_alpha_dropout, dropout1d, dropout2d, transformer_encoder, lazy_linear,
]
CASES = [(spec, prop.name) for spec in ZOO for prop in registered_properties() if why_not_run(prop, spec) is None]


@pytest.mark.parametrize("spec, prop", CASES, ids=[f"{s.name}-{p}" for s, p in CASES])
def test_torch_zoo(spec, prop):
    # The loaded profile: ci's examples, or random ones under the soak command's seeds.
    check_layer(spec, [prop], settings=settings(settings.default, database=None))
