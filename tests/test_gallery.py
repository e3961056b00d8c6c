"""The gallery on torch's own modules: every property that applies passes.

torch's modules are correct by definition, so a failure here is the
framework's bug (a reference, a law's bound, a spec).  The examples come from
the loaded profile (dev: few; ``CI=true``: the ci count; the soak's seeds
change them), one test per (family, property) so that xdist spreads them.

The properties run by default are those that judge a layer by what the
gallery declares: its reference and equivalents, its laws, the algebraic
facts, the robustness checks against the reference and the initialization
facts (``GALLERY_FAMILIES``).  The rest of the catalogue (the spec check,
gradients, compilation, serialization, layers over time, ...) costs most of
the time (a gradcheck of one family takes longer than all its laws) and runs
under ``-m slow`` (``.ci/run``): a user's gallery spec runs it all, so a
gallery spec must pass it all on torch's own modules.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import find, given, settings, strategies as st
from torch import nn

from properties import LayerSpec, SpecError, check_layer, gallery, registered_properties
from properties.cases import LayerCase
from properties.catalogue import laws
from properties.authoring import reference
from properties.runner import cases_for, why_not_run
from properties.strategies import TensorRecipe

LAWS = {p.name for p in registered_properties() if p.family == "laws"}
GALLERY_FAMILIES = ("equivalence", "algebra", "laws", "robustness", "initialization")


def _applicable(spec, *, gallery_families: bool = True) -> list[str]:
    return [
        p.name
        for p in registered_properties()
        if (p.family in GALLERY_FAMILIES) == gallery_families and not why_not_run(p, spec)
    ]


@pytest.mark.parametrize(
    ("spec", "prop"),
    [pytest.param(spec, prop, id=f"{spec.name}-{prop}") for spec in gallery.TORCH_SPECS for prop in _applicable(spec)],
)
def test_torch_modules_pass_their_family(spec, prop):
    check_layer(spec, [prop], settings=settings(settings.default, database=None))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "prop"),
    [
        pytest.param(spec, prop, id=f"{spec.name}-{prop}")
        for spec in gallery.TORCH_SPECS
        for prop in _applicable(spec, gallery_families=False)
    ],
)
def test_torch_modules_pass_the_rest_of_the_catalogue(spec, prop):
    check_layer(spec, [prop], settings=settings(settings.default, database=None))


def test_the_spec_check_calls_an_equivalent_as_it_calls_the_layer():
    """MultiheadAttention is called as module(query, key, value, need_weights=False): the spec
    check called the torch equivalent with the query alone and blamed the spec (found by the
    benchmarks, which run every property on the gallery)."""
    spec = next(s for s in gallery.TORCH_SPECS if s.name == "multihead_attention")
    check_layer(spec, ["spec_is_usable"], settings=settings(settings.default, database=None, max_examples=3))


def test_the_reference_and_the_equivalent_take_a_deep_copy_of_the_layer():
    """Layers over time deep-copies the layer and goes on comparing it with the reference;
    conv1d's and conv2d's read the drawn padding, which only the original carried."""
    prop = next(p for p in registered_properties() if p.name == "matches_equivalents")
    for family in ("conv1d", "conv2d", "linear", "layer_norm", "multihead_attention"):
        spec = next(s for s in gallery.TORCH_SPECS if s.name == family)
        case = find(cases_for(prop, spec), lambda _: True, settings=settings(database=None))
        module = copy.deepcopy(case.build())
        x = case.make_input()
        with torch.no_grad():
            want = case.run(module, x)
            assert torch.equal(case.run(spec.equivalents["torch"](module), x), want), family
            if spec.reference is not None:
                assert reference(case, module, x).value.shape == want.shape, family


def test_every_law_runs_on_some_torch_module():
    declared = {prop for spec in gallery.TORCH_SPECS for prop in _applicable(spec)}
    assert LAWS and LAWS <= declared, LAWS - declared


def test_every_family_has_a_torch_equivalent_and_most_a_reference():
    for spec in gallery.TORCH_SPECS:
        assert "torch" in spec.equivalents, spec.name
    without = {spec.name for spec in gallery.TORCH_SPECS if spec.reference is None}
    assert without == {"multihead_attention"}, without  # judged against its float64 twin


class NamedDifferently(nn.Module):
    def __init__(self, dim):  # no elementwise_affine, eps; a parameter called "scale"
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        h = x.to(torch.promote_types(x.dtype, torch.float32))  # float16/bfloat16 computed in float32
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * self.scale


class NeedsTwoSizes(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()


def test_a_constructor_that_does_not_fit_is_a_spec_error_saying_what_to_pass():
    with pytest.raises(SpecError, match=r"gallery.rms_norm\(NeedsTwoSizes\).*pass a factory"):
        gallery.rms_norm(NeedsTwoSizes)


def test_a_parameter_under_another_name_is_named_in_the_error_and_can_be_mapped():
    spec = gallery.rms_norm(NamedDifferently, elementwise_affine=True)
    assert not spec.factory_kwargs  # no device=/dtype= in its signature: built, then moved
    with pytest.raises(SpecError, match=r"\['scale'\] that the family does not read.*weight_name="):
        check_layer(spec, ["matches_reference"], settings=settings(settings.default, database=None, max_examples=2))
    check_layer(
        gallery.rms_norm(NamedDifferently, weight_name="scale"),
        ["matches_reference", "matches_equivalents", "invariant_to_shift_and_scale"],
        settings=settings(settings.default, database=None, max_examples=10),
    )


def test_bad_options_are_spec_errors():
    with pytest.raises(SpecError, match="approximate"):
        gallery.gelu(approximate="sigmoid")


@pytest.mark.parametrize(
    ("field", "value"),
    [("invariances", ("rotation",)), ("sums_to_one", -1), ("causal_along", (-2, -1)), ("linear_in_input", 1),
     ("dropout_probability", "not a name")],
)
def test_a_malformed_law_fact_is_a_spec_error_naming_the_field(field, value):
    with pytest.raises(SpecError, match=f"field '{field}'"):
        LayerSpec(name="bad", module=nn.Identity, **{field: value})


class _NaNOnceAnInputIsInfinite(nn.Conv2d):
    """nn.Conv2d giving NaN in every output once one input element is infinite, as the
    blocked bfloat16 kernel did on the machine where the soak found this (inf * 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.isfinite().all(), super().forward(x), torch.nan)


def test_a_law_makes_no_claim_where_its_own_input_overflows():
    """conv2d in bfloat16 on 6.9e37: the law's input 3 * (1 - 2x) overflows to -inf, and
    torch's blocked kernel then gives NaN in an output whose window excludes it (inf * 0).
    The law is about finite inputs, so it makes no claim there (the gallery's nightly
    soak found this false alarm)."""
    recipe = TensorRecipe(
        (1, 3, 3), torch.bfloat16, "cpu", "huge", 2.13e37, 10214, "magnitude", ((6, 0.0), (3, 0.0)),
        torch.finfo(torch.bfloat16).max,
    )
    args = {"in_channels": 1, "out_channels": 1, "kernel_size": 2, "padding": 0, "bias": False, "height": 3, "width": 3}
    case = LayerCase(gallery.conv2d(), args, recipe, module_seed=0)
    module, x = case.build(), case.make_input()
    if bool(case.call(module, (x * 0 + case.other_input(x) * 3,), {}).isfinite().all()):
        # This processor's kernel keeps the other windows finite: construct the NaN the soak's gave.
        case = LayerCase(gallery.conv2d(_NaNOnceAnInputIsInfinite), args, recipe, module_seed=0)
        module = case.build()
    assert not bool(case.call(module, (x * 0 + case.other_input(x) * 3,), {}).isfinite().all())  # the kernel's NaN

    @settings(max_examples=1, database=None)
    @given(st.none())
    def law(_):  # inside a Hypothesis test, where the law records its "no claim" event
        laws.linear_in_its_input(case, (0.0, 3.0))

    law()


_LAZY_SPECS = """
import properties.gallery as gallery
from properties import LayerSpec
assert "TORCH_SPECS" not in vars(gallery), "importing the gallery built TORCH_SPECS"
built = []
build = gallery.torch_specs
gallery.torch_specs = lambda: built.append(1) or build()
first = gallery.TORCH_SPECS
assert first and all(isinstance(s, LayerSpec) for s in first), first
assert gallery.TORCH_SPECS is first and built == [1], built
"""


def test_torch_specs_are_built_on_first_use_not_at_import():
    """Registering one family imports the gallery: that must not build all seventeen specs
    (a fresh interpreter, since this one has built them for the tests above)."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", _LAZY_SPECS], cwd=root, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
