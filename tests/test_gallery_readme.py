"""The README's gallery snippet, run as written: a user's own RMSNorm checked by the
gallery's rms_norm family, as a project's conftest.py, in a subprocess."""

import re

import pytest

from tests.test_readme import python_block

pytestmark = pytest.mark.slow

MY_LAYERS = '''
import torch
from torch import nn


class MyRMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        h = x.to(torch.promote_types(x.dtype, torch.float32))  # float16/bfloat16 in float32
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight
'''


def test_the_readme_gallery_snippet_checks_a_users_rms_norm(pytester):
    snippet = python_block("Check your own version of a common layer")
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 3, snippet
    pytester.makepyfile(my_layers=MY_LAYERS)
    pytester.makeconftest(snippet)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hypothesis-profile=dev", "-n", "2", "-v")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()[-5000:]
    out = result.stdout.str()
    for prop in ("matches_reference", "matches_equivalents", "invariant_to_shift_and_scale"):
        assert re.search(rf"PASSED conftest\.py::test_{prop}\[rms_norm_MyRMSNorm\]", out), out[-5000:]
    assert outcomes.get("passed", 0) >= 10, outcomes
