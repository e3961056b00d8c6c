"""The gate end to end, as a user runs it: ``pytest -n auto`` in a project.

Each test writes a small project (a conftest registering a layer) and runs
pytest on it in a subprocess, exactly as a user's shell would.
"""

import pytest

pytestmark = pytest.mark.slow

TEXTBOOK_AS_MYLINEAR = """
import dataclasses
from layers.known_bad import TextbookMyLinear
from layers.specs import centered_spec, my_linear_spec
from properties import register

# MyLinear with the textbook's forward (self.weight.data, self.bias.data).
register(centered_spec, dataclasses.replace(my_linear_spec, module=TextbookMyLinear))
"""


def test_textbook_forward_fails_the_gate_with_a_useful_message(pytester):
    pytester.makeconftest(TEXTBOOK_AS_MYLINEAR)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--hypothesis-profile=ci", "--properties",
        "gradient_flow,matches_reference,matches_equivalents",
    )
    result.assert_outcomes(failed=1, passed=4, skipped=1)
    out = result.stdout.str()
    assert "FAILED conftest.py::test_gradient_flow[MyLinear]" in out
    assert "received no gradient: weight, bias" in out
    # Hypothesis' heading for the shrunk example (older releases: "Falsifying example").
    assert "Failing test case: test_gradient_flow(" in out or "Falsifying example: test_gradient_flow(" in out
    assert "LayerCase(MyLinear, constructor_args={'in_units': 1, 'units': 1}" in out
    assert '--hypothesis-profile=ci --replay=' in out  # the blob, in a command that replays it


def test_correct_layers_pass_and_not_applicable_properties_say_why(pytester):
    pytester.makeconftest(
        "from layers.specs import LESSON_SPECS\nfrom properties import register\nregister(*LESSON_SPECS)\n"
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "-rs", "--properties", "gradient_flow,nonnegative_output"
    )
    result.assert_outcomes(passed=5, skipped=1)
    result.stdout.fnmatch_lines(["*not applicable: CenteredLayer does not declare nonnegative_output*"])


def test_a_failing_node_id_can_be_rerun_alone(pytester):
    pytester.makeconftest(TEXTBOOK_AS_MYLINEAR)
    result = pytester.runpytest_subprocess("conftest.py::test_gradient_flow[MyLinear]", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)


def test_unknown_selection_names_are_usage_errors(pytester):
    pytester.makeconftest(
        "from layers.specs import LESSON_SPECS\nfrom properties import register\nregister(*LESSON_SPECS)\n"
    )
    result = pytester.runpytest_subprocess("--layers", "NoSuchLayer", "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--layers: 'NoSuchLayer' matches nothing; known: CenteredLayer*"])
    result = pytester.runpytest_subprocess("--dtypes", "float8", "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--dtypes: unknown *float8*; choose from float32*"])


def test_selection_narrows_the_gate(pytester):
    pytester.makeconftest(
        "from layers.specs import LESSON_SPECS\nfrom properties import register\nregister(*LESSON_SPECS)\n"
    )
    result = pytester.runpytest_subprocess(
        "--layers", "MyLinear*", "--properties", "gradient_flow,matches_*", "--dtypes", "float64", "-p",
        "no:cacheprovider", "-m", "not variants",
    )
    result.assert_outcomes(passed=6)


def test_a_run_without_cuda_hides_the_gpus_from_its_workers(pytester):
    # Nothing, torch.compile included, can then initialize CUDA in a CPU-only run.
    pytester.makepyfile(
        "import os, torch\n"
        "def test_no_gpu_visible():\n"
        "    assert os.environ['CUDA_VISIBLE_DEVICES'] == '' and not torch.cuda.is_available()\n"
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--devices=cpu")
    result.assert_outcomes(passed=1)


def test_the_plugin_costs_nothing_in_a_project_without_layers(pytester):
    # Installed plugins load in every pytest run of the environment: this one
    # must not import torch (about a second) unless layers are registered.
    pytester.makepyfile("def test_plain():\n    import sys\n    assert 'torch' not in sys.modules\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_layers_registered_by_import_path_are_imported_only_where_tests_are_collected(pytester):
    # The module notes each process that imports it; under xdist only the
    # workers (gw0, gw1) collect, so the controller never imports torch.
    pytester.makepyfile(
        lazy_specs="""
import os
from layers.specs import centered_spec
with open("imported-by.txt", "a") as out:
    out.write(os.environ.get("PYTEST_XDIST_WORKER", "controller") + "\\n")
SPECS = [centered_spec]
"""
    )
    pytester.makeconftest("from properties import register\nregister('lazy_specs:SPECS')\n")
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--properties", "gradient_flow")
    result.assert_outcomes(passed=1)
    assert sorted((pytester.path / "imported-by.txt").read_text().split()) == ["gw0", "gw1"]


def test_the_xdist_controller_does_not_import_torch(pytester):
    # Workers start only after the controller's session start: torch imported
    # there (seconds with a CUDA build) would delay every worker.
    pytester.makeconftest(
        """
import sys
from properties import register
register('layers.specs:LESSON_SPECS')

def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        with open("controller-torch.txt", "w") as out:
            out.write(str("torch" in sys.modules))
"""
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--devices=cpu", "--dtypes=float32", "-k", "gradient_flow"
    )
    result.assert_outcomes(passed=3)
    assert (pytester.path / "controller-torch.txt").read_text() == "False"


def test_xdist_workers_collect_the_expensive_half_interleaved_with_the_cheap_half(pytester):
    # xdist's load scheduler starts each worker on consecutive tests: every
    # worker must collect the same order, with each expensive test beside a cheap one.
    pytester.makeconftest(
        """
from properties import register
register('layers.specs:LESSON_SPECS')

def pytest_collection_finish(session):
    # Not PYTEST_XDIST_WORKER: a serial run inherits it when the self-tests run under xdist.
    worker = getattr(session.config, "workerinput", {}).get("workerid", "serial")
    with open(worker + ".order", "w") as out:
        out.write("\\n".join(item.nodeid for item in session.items))
"""
    )
    selection = ["-p", "no:cacheprovider", "--dtypes=float32", "-k", "gradient_flow or serialization"]
    pytester.runpytest_subprocess(*selection, "--collect-only", "-q").assert_outcomes()
    pytester.runpytest_subprocess("-n", "2", *selection).assert_outcomes(passed=6)
    serial = (pytester.path / "serial.order").read_text().split()
    workers = [(pytester.path / f"gw{i}.order").read_text().split() for i in (0, 1)]
    # Collected family by family: gradients (expensive) first, serialization last.
    assert [name.split("[")[0] for name in serial] == ["conftest.py::test_gradient_flow"] * 3 + ["conftest.py::test_survives_serialization"] * 3
    assert workers[0] == workers[1] == [serial[0], serial[3], serial[1], serial[4], serial[2], serial[5]]


@pytest.mark.parametrize(
    "path, message",
    [
        ("lazy_specs", "register('lazy_specs'): an import path looks like 'package.module:NAME'"),
        ("no_such_module:SPECS", "register('no_such_module:SPECS'): there is no module 'no_such_module' on sys.path"),
        ("lazy_specs:NOPE", "register('lazy_specs:NOPE'): module 'lazy_specs' has no attribute 'NOPE'."),
        ("lazy_specs:NOT_A_SPEC", "register('lazy_specs:NOT_A_SPEC') found 42. Wrap the layer in LayerSpec(...)."),
    ],
)
def test_a_wrong_import_path_is_an_error_that_says_what_to_change(pytester, path, message):
    # A malformed path fails when the conftest is loaded, the others when the gate is collected.
    pytester.makepyfile(lazy_specs="NOT_A_SPEC = 42\n")
    pytester.makeconftest(f"from properties import register\nregister({path!r})\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    assert message in result.stdout.str() + result.stderr.str()


def test_the_markdown_report_matches_the_terminal_matrix_across_workers(pytester):
    pytester.makeconftest(TEXTBOOK_AS_MYLINEAR)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--properties", "gradient_flow,nonnegative_output,is_deterministic",
        "--report-md=reports/gate.md", "--report-json=reports/gate.json",
    )
    result.assert_outcomes(failed=1, passed=4, skipped=1)
    terminal = result.stdout.str().split("layer gate: property x layer", 1)[1].splitlines()
    names = {"gradient_flow", "nonnegative_output", "is_deterministic"}
    cells = {tuple(line.split()) for line in terminal if line.split()[:1] and line.split()[0] in names and len(line.split()) == 3}
    markdown = (pytester.path / "reports" / "gate.md").read_text()
    rows = {
        tuple(c.strip().strip("`") for c in line.strip("|").split("|"))
        for line in markdown.splitlines()
        if line.startswith("| `")
    }
    assert cells == rows == {
        ("gradient_flow", "pass", "FAIL"),
        ("is_deterministic", "pass", "pass"),
        ("nonnegative_output", "n/a", "pass"),
    }
    import json

    results = json.loads((pytester.path / "reports" / "gate.json").read_text())["results"]
    assert len(results) == 6  # every worker's results gathered on the controller
    assert {r["cell"] for r in results if r["layer"] == "MyLinear" and r["property"] == "gradient_flow"} == {"FAIL"}


def test_the_report_states_the_input_space_each_layer_covered(pytester):
    pytester.makeconftest(TEXTBOOK_AS_MYLINEAR)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--hypothesis-profile=ci", "--properties", "is_deterministic,leaves_its_input_alone",
        "--report-md=reports/gate.md", "--report-json=reports/gate.json",
    )
    result.assert_outcomes(passed=4)
    import json

    coverage = json.loads((pytester.path / "reports" / "gate.json").read_text())["coverage"]
    # Two properties x 100 ci examples per layer, gathered from both workers.
    assert {layer: c["examples"] for layer, c in coverage.items()} == {"CenteredLayer": 200, "MyLinear": 200}
    assert set(coverage["CenteredLayer"]["ranks"]) == {0, 1, 2, 3, 4}
    assert set(coverage["MyLinear"]["dtypes"]) == {"float32", "float64", "float16", "bfloat16"}
    # The size ladder: sides past the ordinary draw (4 for batch sides, 8 for features).
    assert coverage["CenteredLayer"]["largest_side"] > 16 and coverage["MyLinear"]["largest_side"] > 16
    lines = [line for line in result.stdout.lines if line.startswith(("CenteredLayer: ", "MyLinear: "))]
    assert len(lines) == 2 and all("examples; ranks" in line and "regimes" in line for line in lines)
    markdown = (pytester.path / "reports" / "gate.md").read_text()
    assert "### Input space the examples covered" in markdown and "- MyLinear: 200 examples;" in markdown
