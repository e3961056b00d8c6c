"""The stand-alone example project (``examples/scaled_relu``) as its user runs it.

The project is copied into a temporary directory, outside this checkout, and
its gate runs in a subprocess through the installed plugin: the correct layer
passes, a broken copy fails with the layer and the property named.
"""

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "scaled_relu"
GATE = ("-n", "2", "-p", "no:cacheprovider", "--hypothesis-profile=ci")


def copy_example(pytester):
    shutil.copytree(
        EXAMPLE, pytester.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis")
    )


def test_the_example_passes_its_gate(pytester):
    copy_example(pytester)
    result = pytester.runpytest_subprocess(*GATE, "-rs")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0
    assert outcomes.get("passed", 0) >= 15, outcomes
    result.stdout.fnmatch_lines(["*not applicable: ScaledReLU does not declare centering*"])


def test_a_detached_scale_fails_the_gate_naming_layer_and_property(pytester):
    copy_example(pytester)
    layer = pytester.path / "scaled_relu.py"
    source = layer.read_text()
    broken = source.replace("torch.relu(x) * self.scale", "torch.relu(x) * self.scale.data")
    assert broken != source, "the example's forward changed; update this mutation"
    layer.write_text(broken)
    # One property and no workers keep this run short: xdist's reporting of a
    # failure is tested in test_plugin.py.
    result = pytester.runpytest_subprocess(
        "-n", "0", "-p", "no:cacheprovider", "--hypothesis-profile=ci", "--properties", "gradient_flow"
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "FAILED conftest.py::test_gradient_flow[ScaledReLU]" in out
    assert "received no gradient: scale" in out
    assert "LayerCase(ScaledReLU, constructor_args={'features': 1}" in out  # the shrunk example
