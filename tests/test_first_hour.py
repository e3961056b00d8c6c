"""A newcomer's first hour: the install block, a short README, configuration
errors that name the field, runs that check nothing fail, failures that replay,
no noise."""

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import settings
import torch
from torch import nn

from layers.known_bad import TextbookMyLinear
from layers.lesson import MyLinear
from layers.specs import LESSON_SPECS, centered_spec, my_linear_spec
from properties import LayerSpec, SpecError, check_layer, tolerances as tol
from properties.report import GateReport
from properties.runner import registered_properties, spec_problem

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FAST = settings(max_examples=10, database=None, deadline=None, derandomize=True)


class NoFactoryKwargs(nn.Module):
    """A layer whose constructor takes no device=/dtype=."""

    def forward(self, x):
        return x


NO_DTYPE_SPEC = dataclasses.replace(
    centered_spec, name="NoDtype", module=NoFactoryKwargs, reference=None, factory_kwargs=True
)


# -- configuration errors ------------------------------------------------------------


def test_a_constructor_without_dtype_is_a_spec_error_naming_factory_kwargs():
    with pytest.raises(SpecError, match=r"'NoDtype', field 'factory_kwargs': NoFactoryKwargs takes no dtype= argument"):
        check_layer(NO_DTYPE_SPEC, ["spec_is_usable"], settings=FAST)
    check_layer(dataclasses.replace(NO_DTYPE_SPEC, factory_kwargs=False), ["spec_is_usable"], settings=FAST)


def test_an_unusable_spec_is_found_on_its_simplest_example_and_usable_ones_are_not():
    assert all(spec_problem(spec) is None for spec in LESSON_SPECS)
    problem = spec_problem(NO_DTYPE_SPEC)
    assert isinstance(problem, SpecError) and "field 'factory_kwargs'" in str(problem)


class RejectsItsArgument(nn.Module):
    """Correct arguments, and a TypeError raised by the constructor's own body."""

    def __init__(self, units):
        super().__init__()
        raise TypeError(f"units={units} must be even")


def test_a_missing_or_unknown_constructor_argument_names_constructor_args_not_module():
    missing = LayerSpec(name="MissingUnits", module=MyLinear, constructor_args={"in_units": 3}, input_event_shape=(3,))
    problem = str(spec_problem(missing))
    signature = "MyLinear(in_units, units, *, device=None, dtype=None)"
    assert f"'MissingUnits', field 'constructor_args': {signature} requires 'units'" in problem, problem
    assert "field 'module'" not in problem
    unknown = dataclasses.replace(missing, name="Unknown", constructor_args={"in_units": 3, "units": 2, "bias": True})
    problem = str(spec_problem(unknown))
    assert f"field 'constructor_args': constructor_args gives 'bias', which {signature} does not take" in problem, problem
    # The same TypeError raised inside the constructor, on arguments it binds, stays the layer's.
    inside = LayerSpec(name="RaisesInside", module=RejectsItsArgument, constructor_args={"units": 3}, factory_kwargs=False)
    problem = str(spec_problem(inside))
    assert "field 'module' raised TypeError: units=3 must be even" in problem, problem
    assert "constructor_args" not in problem


def test_a_reference_of_the_wrong_shape_is_one_spec_error_even_where_the_simplest_example_hides_it():
    # relu(x) has the input's shape: on the simplest example (in_units == units == 1) the layer's too.
    wrong = dataclasses.replace(my_linear_spec, name="WrongShape", reference=lambda module, x: tol.relu(x))
    problem = spec_problem(wrong)
    assert isinstance(problem, SpecError), problem
    # Named on an example where the shapes differ (in_units != units).
    shapes = r"'WrongShape', field 'reference' gives shape \(2, (\d+)\) .*'in_units': \1, 'units': (?!\1\b)\d+\}, where the layer"
    assert re.search(shapes, str(problem)), problem


# -- failures in the property's own words --------------------------------------------


class ComputesInFloat32(nn.Module):
    def forward(self, x):
        return (x.float() * 2).to(x.dtype)


class Doubles(nn.Module):
    def forward(self, x):
        return x * 2


class WrongBackward(torch.autograd.Function):
    """2x forward, 3x backward: mis-derived, all in float64."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 3


class MisDerived(nn.Module):
    def forward(self, x):
        return WrongBackward.apply(x)


@pytest.mark.parametrize("prop", ["gradients_match_finite_differences", "matches_reference"])
def test_a_float64_layer_computing_in_float32_is_told_so(prop):
    float64 = dict(factory_kwargs=False, input_event_shape=(), dtypes=(torch.float64,), reference=lambda module, x: 2 * x)
    few = settings(max_examples=30, database=None, deadline=None, derandomize=True)
    with pytest.raises(AssertionError) as failure:
        check_layer(LayerSpec(name="InFloat32", module=ComputesInFloat32, **float64), [prop], settings=few)
    message = str(failure.value)
    assert "the layer computed in float32: a `.float()` cast? (forward turns float64 values into float32)" in message
    check_layer(LayerSpec(name="Doubles", module=Doubles, **float64), [prop], settings=few)
    if prop == "gradients_match_finite_differences":  # a float64 mistake gets no float32 hint
        with pytest.raises(AssertionError) as failure:
            check_layer(LayerSpec(name="MisDerived", module=MisDerived, **float64), [prop], settings=few)
        message = str(failure.value)
        assert "a detached or mis-derived part of forward?" in message and "float32" not in message


def test_gradcheck_on_a_detached_weight_says_so_in_the_propertys_words():
    textbook = dataclasses.replace(my_linear_spec, name="Textbook", module=TextbookMyLinear)
    with pytest.raises(AssertionError) as failure:
        check_layer(textbook, ["gradients_match_finite_differences"], settings=FAST)
    message = str(failure.value)
    assert "autograd says the output does not depend on weight" in message, message
    assert "outside autograd (.data, .detach()" in message and "expected to be zero" not in message


# -- the report's legend ----------------------------------------------------------------


def _report(cells: dict[tuple[str, str], tuple[str, str]]) -> GateReport:
    report = GateReport(config=None)  # type: ignore[arg-type]  (only writing needs the config)
    for key, (outcome, reason) in cells.items():
        report.results[key] = {"outcome": outcome, "reason": reason, "nodeid": ""}
    return report


def test_the_legend_explains_only_the_cells_that_appear():
    passing = _report({("L", "p"): ("passed", "")})
    assert passing.text_matrix()[-1] == "1 pass"
    assert "n/a" not in passing.markdown()
    mixed = _report({("L", "p"): ("passed", ""), ("L", "q"): ("skipped", "not applicable: L does not declare x")})
    assert "(n/a: the spec does not declare what the property needs)" in mixed.text_matrix()[-1]
    unusable = _report(
        {("L", "spec_is_usable"): ("config error", "SpecError: ..."), ("L", "q"): ("skipped", "not run: the spec is unusable (see x)")}
    )
    lines = unusable.text_matrix()
    assert "1 CONFIG, 1 not run" in lines[-2] and "not run: the layer's spec is unusable" in lines[-2]
    assert lines[-1].startswith("spec_is_usable [L] CONFIG") and not any(line.startswith("q [L]") for line in lines)


# -- the README, the docs, CI ---------------------------------------------------------


def _install_block() -> list[str]:
    section = README.split("\n## Install and run\n", 1)[1]
    block = re.search(r"^```bash\n(.*?)^```", section, re.M | re.S).group(1)
    return block.splitlines()


def test_the_install_block_installs_cpu_torch_first_and_says_what_gpu_users_do():
    lines = _install_block()
    commands = [line for line in lines if line.strip() and not line.startswith("#")]
    assert commands[0] == "pip install torch --index-url https://download.pytorch.org/whl/cpu", commands
    assert commands[1:] == ['pip install -e ".[test]"', "pytest -n auto"], commands
    comment = " ".join(line for line in lines[: lines.index(commands[0])] if line.startswith("#"))
    assert "CPU" in comment and "GPU" in comment, comment


def test_ci_runs_the_readme_block_itself_and_then_the_slow_self_tests():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert '"\\n## Install and run\\n"' in script and "readme_block" in script
    assert "torch.version.cuda" in script and "nvidia-" in script  # no CUDA wheels, checked
    assert script.rstrip().splitlines()[-1].startswith("pytest -n auto -m slow")


def test_the_slow_self_tests_are_left_out_of_the_first_command():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "-m 'not slow'" in options["addopts"]


def test_the_readme_is_short_and_its_figures_come_from_commands():
    assert len(README.splitlines()) <= 350
    assert "-rs" not in README  # -ra is already in the default options
    assert "<!-- timings:start -->" in README and "<!-- timings:end -->" in README
    docs = {name: (ROOT / "docs" / name).read_text(encoding="utf-8") for name in ("performance.md", "reliability.md")}
    assert "<!-- benchmarks:start -->" in docs["performance.md"]
    assert "<!-- soak:start -->" in docs["reliability.md"] and "<!-- soak-cuda:start -->" in docs["reliability.md"]
    for page in ("reliability", "performance", "running-at-scale", "layout"):
        assert f"(docs/{page}.md)" in README


# -- end to end, as a user runs it ----------------------------------------------------

UNUSABLE_CONFTEST = """
from torch import nn
from properties import LayerSpec, register

class NoDtype(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return x

register(LayerSpec(name="NoDtype", module=NoDtype))
"""

TEXTBOOK_CONFTEST = """
import dataclasses
from layers.known_bad import TextbookMyLinear
from layers.specs import centered_spec, my_linear_spec
from properties import register

register(centered_spec, dataclasses.replace(my_linear_spec, module=TextbookMyLinear))
"""


# As if numpy were not installed (a plain `pip install -e ".[test]"`).
NO_NUMPY = """
import sys

class NoNumpy:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoNumpy())
"""


@pytest.mark.slow
def test_an_unusable_spec_is_one_config_with_its_message_and_the_rest_not_run(pytester):
    pytester.makeconftest(UNUSABLE_CONFTEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    # One test per property: spec_is_usable fails, the others skip.
    result.assert_outcomes(failed=1, skipped=len(registered_properties()) - 1)
    out = result.stdout.str()
    assert "FAILED conftest.py::test_spec_is_usable[NoDtype]" in out
    result.stdout.fnmatch_lines(
        [
            "conftest.py:11: SpecError",  # the register() call
            "spec_is_usable*CONFIG",
            "1 CONFIG, * not run*",
            "spec_is_usable [[]NoDtype] CONFIG: SpecError: LayerSpec 'NoDtype', field 'factory_kwargs'*",
        ]
    )
    assert "Call something" not in out and "Traceback" not in out
    assert len(out.splitlines()) < 100, out


# relu(x): the input's shape, which is the layer's only where in_units == units (the simplest example).
WRONG_SHAPE_CONFTEST = """
import dataclasses
from layers.specs import my_linear_spec
from properties import register, tolerances as tol

register(dataclasses.replace(my_linear_spec, name="WrongShape", reference=lambda module, x: tol.relu(x)))
"""


@pytest.mark.slow
def test_a_reference_of_the_wrong_shape_is_one_config_naming_reference_and_the_rest_not_run(pytester):
    pytester.makeconftest(WRONG_SHAPE_CONFTEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=len(registered_properties()) - 1)
    result.stdout.fnmatch_lines(
        [
            "1 CONFIG, * not run*",
            "spec_is_usable [[]WrongShape] CONFIG: SpecError: LayerSpec 'WrongShape', field 'reference' gives shape*",
        ]
    )
    out = result.stdout.str()
    assert "jit.trace" not in out and "memory layout" not in out and not re.search(r"^\w+ +FAIL", out, re.M), out


@pytest.mark.slow
def test_a_spec_error_while_the_conftest_registers_is_shown_alone(pytester):
    pytester.makeconftest(
        "from torch import nn\nfrom properties import LayerSpec, register\n"
        "register(LayerSpec(name='Bad', module=nn.ReLU, batch_dims=(3, 1)))\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *conftest.py: LayerSpec 'Bad', field 'batch_dims': (3, 1) is not*"])
    assert "ImportError while loading conftest" not in result.stderr.str() + result.stdout.str()
    assert "Traceback" not in result.stderr.str()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_a_selection_that_checks_nothing_is_a_usage_error(pytester, workers):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --devices=cuda selects something")
    pytester.makeconftest("from properties import register\nregister('layers.specs:LESSON_SPECS')\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--devices=cuda", *workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(["ERROR: --devices=cuda: nothing to check*this machine has [[]'cpu'[]]*Change --devices."])
    if workers:
        return  # under xdist the controller checks the devices; the rest needs the layers, which only workers import
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--layers=CenteredLayer", "--properties=relu_is_exact")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --layers=CenteredLayer --properties=relu_is_exact: nothing to check*"])


@pytest.mark.slow
def test_a_failure_points_at_the_layer_and_replays_from_its_blob(pytester):
    pytester.makeconftest(TEXTBOOK_CONFTEST)
    # numpy missing, as in a plain `pip install -e ".[test]"`: torch's warning must not show.
    pytester.makepyfile(sitecustomize=NO_NUMPY)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rs", "--hypothesis-profile=ci", "--properties=gradient_flow,nonnegative_output"
    )
    result.assert_outcomes(failed=1, passed=2, skipped=1)
    out = result.stdout.str()
    assert "Failed to initialize NumPy" not in out + result.stderr.str()
    assert "@reproduce_failure" not in out and "__tracebackhide__" not in out
    result.stdout.fnmatch_lines(["*layers/known_bad.py:*: AssertionError", "SKIPPED [[]1[]] conftest.py:6: not applicable*"])
    assert "runner.py" not in out
    # The README shows this failure: its lines are the real ones.
    shown = re.search(r"^```\n(_+ test_gradient_flow\[MyLinear\] _+\n.*?)^```", README, re.M | re.S).group(1)
    for line in shown.splitlines():
        if line.startswith("E   AssertionError") or line.startswith("E   Draw 1"):
            assert line in out, line
    replay = re.search(r'replay this example:  pytest "(\S+)" --hypothesis-profile=ci --replay=(\S+)', out)
    assert replay, out
    node, blob = replay.groups()
    again = pytester.runpytest_subprocess("-p", "no:cacheprovider", node, f"--replay={blob}")
    again.assert_outcomes(failed=1)
    assert "received no gradient: weight, bias" in again.stdout.str()
    wrong = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--replay={blob}")
    assert wrong.ret == pytest.ExitCode.USAGE_ERROR
    wrong.stderr.fnmatch_lines(["ERROR: --replay replays one gate test, and * are selected*"])
    # After the fix the same replay line answers "is it fixed?": it passes, and says so in one line.
    pytester.makeconftest(TEXTBOOK_CONFTEST.replace("TextbookMyLinear", "MyLinear").replace("layers.known_bad", "layers.lesson"))
    fixed = pytester.runpytest_subprocess("-p", "no:cacheprovider", node, f"--replay={blob}")
    fixed.assert_outcomes(passed=1)
    assert f"--replay: the example no longer fails: {node} passes on it" in fixed.stdout.str()
    assert "DidNotReproduce" not in fixed.stdout.str() and "Failing test case" not in fixed.stdout.str()
