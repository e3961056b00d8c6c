"""Green means checked (properties.claims): a cell passes only where its property made
its claim on at least one example; a property that withdrew every claim is shown as
``no claim``, with its reason, in the terminal matrix and in both reports."""

import json

import pytest
import torch
from hypothesis import settings
from torch import nn

from properties import claims, gallery, tolerances as tol
from properties.runner import check_layer
from tests.test_gallery_readme import MY_LAYERS

FEW = settings(max_examples=8, database=None, derandomize=True, deadline=None)


def test_a_ledger_records_a_withdrawal_and_a_vacant_comparison():
    with claims.example_ledger() as ledger:
        claims.no_claim("nothing to compare")
    assert ledger.no_claim_reason == "nothing to compare"
    with claims.example_ledger() as ledger:  # every element beyond the bound's claim
        tol.assert_within_bound(torch.tensor([float("inf")]), tol.exact(torch.tensor([1e300])).map(lambda t: t) * 1e300)
    assert ledger.no_claim_reason is not None and "every element" in ledger.no_claim_reason
    with claims.example_ledger() as ledger:  # one vacant comparison, one that claims
        tol.assert_within_bound(torch.tensor([float("inf")]), tol.exact(torch.tensor([1e300])) * 1e300)
        tol.assert_within_bound(torch.tensor([2.0]), tol.exact(torch.tensor([2.0])))
    assert ledger.no_claim_reason is None
    claims.no_claim("outside a ledger: ignored")  # a property called directly records nothing


# The README's own RMSNorm (MyRMSNorm(dim, eps=1e-6), no elementwise_affine option), as written there.
_readme_layers: dict = {}
exec(MY_LAYERS, _readme_layers)
MyRMSNorm = _readme_layers["MyRMSNorm"]


class ZeroInitializedRMSNorm(MyRMSNorm):
    """The planted bug: the weight starts at zeros, so every output is 0."""

    def __init__(self, dim, eps=1e-6):
        super().__init__(dim, eps)
        nn.init.zeros_(self.weight)


def test_a_zero_initialized_rms_norm_without_the_affine_option_fails_its_init_check():
    counts = check_layer(gallery.rms_norm(MyRMSNorm), ["initialized_from_declared_distribution"], settings=FEW)
    assert counts["initialized_from_declared_distribution"]["claimed"] > 0  # checked, not vacuously passed
    with pytest.raises(AssertionError, match=r"initialized_from_declared_distribution failed on .*weight is not initialized to Constant"):
        check_layer(gallery.rms_norm(ZeroInitializedRMSNorm), ["initialized_from_declared_distribution"], settings=FEW)


def test_a_weightless_norm_without_the_affine_option_makes_no_init_claim():
    class WeightlessRMSNorm(nn.Module):
        def __init__(self, dim, eps=1e-6):
            super().__init__()
            self.eps = eps

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    counts = check_layer(gallery.rms_norm(WeightlessRMSNorm), ["initialized_from_declared_distribution"], settings=FEW)
    assert counts["initialized_from_declared_distribution"]["claimed"] == 0  # no spec error, and no pass either


def test_check_layer_counts_the_examples_that_made_a_claim():
    counts = check_layer(gallery.layer_norm(), ["matches_reference"], settings=FEW)
    assert counts["matches_reference"]["examples"] >= 1
    assert 0 < counts["matches_reference"]["claimed"] <= counts["matches_reference"]["examples"]


NEVER_CLAIMS = """
from layers.specs import centered_spec
from properties import register, layer_property
from properties.claims import no_claim

register(centered_spec)


@layer_property(family="robustness")
def never_claims(case):
    \"\"\"Withdraws its claim on every example.\"\"\"
    no_claim("never_claims: nothing is ever compared")
"""


@pytest.mark.slow
def test_a_property_that_never_claims_is_no_claim_in_all_three_outputs(pytester):
    pytester.makeconftest(NEVER_CLAIMS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--hypothesis-profile=ci", "--properties", "never_claims,matches_reference",
        "--report-md=gate.md", "--report-json=gate.json",
    )
    result.assert_outcomes(passed=2)  # pytest's own outcome: the test did not fail
    out = result.stdout.str()
    assert any(line.split()[:3] == ["never_claims", "no", "claim"] for line in out.splitlines()), out
    assert any(line.split()[:2] == ["matches_reference", "pass"] for line in out.splitlines()), out
    assert "never_claims [CenteredLayer] no claim: no claim on any of" in out
    assert "1 pass, 1 no claim" in out
    markdown = (pytester.path / "gate.md").read_text()
    assert "| `never_claims` | no claim |" in markdown
    assert "never_claims: nothing is ever compared" in markdown
    cells = {r["property"]: r for r in json.loads((pytester.path / "gate.json").read_text())["results"]}
    assert cells["never_claims"]["cell"] == "no claim"
    assert cells["never_claims"]["examples"] > 0 and cells["never_claims"]["claimed"] == 0
    assert cells["matches_reference"]["cell"] == "pass" and cells["matches_reference"]["claimed"] > 0
