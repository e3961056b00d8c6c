"""docs/layer-kinds.md's block, run as a project's conftest.py: a stochastic,
a two-input and an integer-input layer pass the gate, and the properties
their fields enable run on them."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[1] / "docs" / "layer-kinds.md"


def test_the_layer_kinds_example_registers_three_layers_that_pass(pytester):
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert len(blocks) == 1, f"{DOC.name} has {len(blocks)} python blocks, expected one"
    pytester.makeconftest(blocks[0])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hypothesis-profile=dev", "-v")
    assert result.ret == 0, result.stdout.str()
    out = result.stdout.str()
    for layer in ("GaussianNoise", "Gate", "ScaledEmbedding"):
        for prop in ("matches_reference", "is_deterministic", "samples_are_independent"):
            assert re.search(rf"conftest\.py::test_{prop}\[{layer}\] PASSED", out), (layer, prop)
