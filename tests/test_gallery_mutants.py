"""The gallery's mutation self-test: each planted bug in tests/gallery_mutants.py is
caught by each listed property's own assertion under the ``ci`` profile.

A crash is not a detection: the failure must be the AssertionError the runner
names "<property> failed on <layer>".
"""

from __future__ import annotations

import pytest

from properties import check_layer, registered_properties
from tests.gallery_mutants import GALLERY_MUTANTS
from tests.test_mutants import CI_WITHOUT_SHRINKING

PAIRS = [(spec, prop) for _, spec, caught_by in GALLERY_MUTANTS for prop in sorted(caught_by)]


# The unbiased-variance mutant divides by n - 1, which torch warns about on a row of one
# (\W+ stands for the message's ": ", since a colon would end the filter's message field).
@pytest.mark.filterwarnings(r"ignore:var\(\)\W+degrees of freedom is <= 0:UserWarning")
@pytest.mark.parametrize("spec, prop", PAIRS, ids=[f"{s.name}-{p}" for s, p in PAIRS])
def test_property_catches_gallery_mutant(spec, prop):
    with pytest.raises(AssertionError) as failure:
        check_layer(spec, [prop], settings=CI_WITHOUT_SHRINKING)
    assert str(failure.value).startswith(f"{prop} failed on {spec.name}: "), failure.value


def test_every_gallery_mutant_names_real_properties():
    known = {p.name for p in registered_properties()}
    for _, spec, caught_by in GALLERY_MUTANTS:
        assert caught_by and caught_by <= known, (spec.name, caught_by - known)


def test_the_issue_bug_classes_are_covered():
    described = " ".join(f"{bug} {spec.module.module.__doc__}" for bug, spec, _ in GALLERY_MUTANTS)
    for bug in (
        "epsilon", "unbiased", "wrong dims", "max shift", "1/sqrt(d)", "wrong axis", "float32 upcast",
        "relu substituted for silu", "tanh approximation", "gate", "in-place", "causal mask off by one",
        "zeros for ones",
    ):
        assert bug in described, bug
