"""The README as written: its tables generated from the code say what the code
does, and its "Add a layer" and "Add a property" snippets run.

The tables (the properties, ``LayerSpec``'s fields, here and in docs/) are
rendered again in memory and compared with the files. The snippets (slow):
the first becomes a project's ``conftest.py``, the second a module
``my_properties.py`` that the conftest imports; the gate then runs in a
subprocess, as a user's shell would run it.
"""

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from properties import records, tables
from properties.registry import registered_properties
from properties.spec import LayerSpec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

def python_block(heading: str) -> str:
    """The one ```python block of the README section ``## <heading>``."""
    text = README.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)
    section = [s for s in sections if s.splitlines()[0].strip() == heading]
    assert len(section) == 1, f"README.md has {len(section)} sections '## {heading}'"
    blocks = re.findall(r"^```python\n(.*?)^```", section[0], flags=re.M | re.S)
    assert len(blocks) == 1, f"README.md '## {heading}' has {len(blocks)} python blocks, expected one"
    return blocks[0]


@pytest.mark.slow
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


# -- the generated tables ------------------------------------------------------------


def test_the_generated_tables_say_what_the_code_does():
    assert records.stale_sections(root=ROOT) == [], "regenerate them with: python -m properties.records --docs"


def _copy_generated_files(to: Path) -> None:
    for relative in {relative for relative, _, _ in records.GENERATED}:
        (to / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, to / relative)


def test_a_table_that_drifted_from_the_code_is_reported_and_regenerated(tmp_path):
    _copy_generated_files(tmp_path)
    readme, fields = tmp_path / "README.md", tmp_path / "docs" / "spec-fields.md"
    # A property dropped from the README's table, a field's explanation edited by hand.
    readme.write_text(re.sub(r"^\| spec \|.*\n", "", readme.read_text(encoding="utf-8"), count=1, flags=re.M), encoding="utf-8")
    fields.write_text(fields.read_text(encoding="utf-8").replace("Unique name;", "A name;", 1), encoding="utf-8")
    assert records.stale_sections(root=tmp_path) == [
        "README.md: section 'properties' no longer says what the code does",
        "docs/spec-fields.md: section 'spec-fields' no longer says what the code does",
    ]
    assert records.main(["--check", "--root", str(tmp_path)]) == 1
    assert records.main(["--docs", "--root", str(tmp_path)]) == 0
    assert records.stale_sections(root=tmp_path) == []
    assert readme.read_text(encoding="utf-8") == README.read_text(encoding="utf-8")


def test_a_file_without_its_markers_is_a_usage_error_naming_them(tmp_path, capsys):
    _copy_generated_files(tmp_path)
    (tmp_path / "docs" / "properties.md").write_text("# The properties\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        records.main(["--docs", "--root", str(tmp_path)])
    assert exit_.value.code == 2
    assert "<!-- properties:start -->" in capsys.readouterr().err
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == README.read_text(encoding="utf-8")  # nothing written


def test_the_tables_name_every_builtin_property_and_every_spec_field():
    builtin = [p for p in registered_properties() if p.check.__module__.startswith("properties.catalogue.")]
    assert len(builtin) >= 38
    readme_table = records.read_section(README, "properties")
    docs_table = records.read_section(ROOT / "docs" / "properties.md", "properties")
    for prop in builtin:
        assert f"`{prop.name}`" in readme_table and f"| `{prop.name}` | {prop.family} |" in docs_table, prop.name
    readme_fields = records.read_section(README, "spec-fields")
    for field in dataclasses.fields(LayerSpec):
        assert f"`{field.name}`" in readme_fields, field.name


def test_the_spec_docstring_must_explain_every_field_once():
    @dataclasses.dataclass
    class Spec:
        """A spec.

        Building:

        ``name``
            Its name.
        ``size``, ``name``
            Its size.
        ``colour``
            Its colour.
        """

        name: str
        size: int
        weight: float

    with pytest.raises(ValueError) as error:
        tables.spec_field_docs(spec_class=Spec)
    message = str(error.value)
    assert "field 'weight' is not explained" in message
    assert "'colour' is explained but is no field" in message
    assert "'name' is explained twice" in message
    Spec.__doc__ = "A spec.\n\nBuilding:\n\n``name``, ``size``\n    What.\n``weight``\n    How heavy,\n    in kg.\n"
    assert tables.spec_field_docs(spec_class=Spec) == [("Building", [(("name", "size"), "What."), (("weight",), "How heavy, in kg.")])]


def test_markdown_cells_keep_code_and_escape_emphasis_and_pipes():
    assert tables.markdown("f(a*x + b*y) = ``a*f(x)`` or ``|x|``\n  and |y|") == r"f(a\*x + b\*y) = `a*f(x)` or `\|x\|` and \|y\|"


def test_the_readme_says_how_a_users_pytest_lists_skip_reasons():
    text = README.read_text(encoding="utf-8")
    assert "`pytest -ra` lists them" in text and "default `-ra`" not in text
