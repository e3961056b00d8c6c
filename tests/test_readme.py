"""The README's "Add a layer" and "Add a property" snippets, run as written.

The first becomes a project's ``conftest.py``, the second a module
``my_properties.py`` that the conftest imports; the gate then runs in a
subprocess, as a user's shell would run it.
"""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"

def python_block(heading: str) -> str:
    """The one ```python block of the README section ``## <heading>``."""
    text = README.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)
    section = [s for s in sections if s.splitlines()[0].strip() == heading]
    assert len(section) == 1, f"README.md has {len(section)} sections '## {heading}'"
    blocks = re.findall(r"^```python\n(.*?)^```", section[0], flags=re.M | re.S)
    assert len(blocks) == 1, f"README.md '## {heading}' has {len(blocks)} python blocks, expected one"
    return blocks[0]


def test_the_readme_snippets_register_a_layer_and_a_property_that_runs_on_it(pytester):
    pytester.makepyfile(my_properties=python_block("Add a property"))
    pytester.makeconftest(python_block("Add a layer") + "\nimport my_properties  # noqa: E402,F401\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--hypothesis-profile=ci", "-n", "2", "-v"
    )
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0
    assert outcomes.get("passed", 0) >= 10, outcomes
    out = result.stdout.str()
    assert re.search(r"PASSED conftest\.py::test_keeps_the_batch_shape\[ScaledReLU\]", out), out
