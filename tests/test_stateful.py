"""The stateful property: it catches every bug class of tests/stateful_mutants.py
with its own assertion under the ``ci`` profile, passes the correct lesson layers,
and prints the shrunk sequence as a program that runs."""

import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import Phase, find, settings
from hypothesis.errors import NoSuchExample

from layers.specs import LESSON_SPECS, my_linear_spec
from properties import SpecError, check_layer
from properties.catalogue.stateful import MAX_STEPS, steps_for
from properties.strategies import layer_cases
from tests.stateful_mutants import STATEFUL_MUTANTS, WarmUpMyLinear, readme_example

PROPERTY = "behaves_the_same_over_time"
CI = settings(settings.get_profile("ci"), database=None, print_blob=False, report_multiple_bugs=False)
CI_WITHOUT_SHRINKING = settings(CI, phases=[Phase.explicit, Phase.generate])

# Which invariant catches each bug class: a failure for another reason would
# mean the mutant is caught by accident.
EXPECTED = {
    "WarmUpMyLinear": "the output against the reference from the current parameters",
    "ShapeCachedCentered": "the output against the reference from the current parameters",
    "GradClearingMyLinear": "(gradients must accumulate over backward passes until zero_grad)",
    "GradZeroingBuiltin": "(gradients must accumulate over backward passes until zero_grad)",
    "ReplacedParameterMyLinear": "are not the objects the optimizer holds",
    "EvalDriftBuiltin": "in eval mode, buffer running_mean (eval must not change it)",
    "HookLeakBuiltin": "something registers hooks on every call",
}


def failure_of(spec, settings_):
    with pytest.raises(AssertionError) as failure:
        check_layer(spec, [PROPERTY], settings=settings_)
    assert not isinstance(failure.value, SpecError), failure.value
    return str(failure.value)


@pytest.mark.parametrize("mutant", STATEFUL_MUTANTS, ids=lambda m: m.spec.name)
def test_the_stateful_property_catches_the_bug_class(mutant):
    message = failure_of(mutant.spec, CI_WITHOUT_SHRINKING)
    assert message.startswith(f"{PROPERTY} failed on {mutant.spec.name}: "), message
    assert EXPECTED[mutant.spec.name] in message, message


def test_every_stateful_mutant_has_an_expected_invariant():
    assert {m.spec.name for m in STATEFUL_MUTANTS} == set(EXPECTED)


@pytest.mark.parametrize("spec", LESSON_SPECS, ids=lambda s: s.name)
def test_the_lesson_layers_behave_the_same_over_time(spec):
    check_layer(spec, [PROPERTY], settings=CI)


def test_without_a_reference_a_fresh_instance_is_the_judge():
    spec = dataclasses.replace(STATEFUL_MUTANTS[0].spec, reference=None)
    message = failure_of(spec, CI_WITHOUT_SHRINKING)
    assert "the output against a fresh instance with the same state_dict" in message, message


def test_the_failure_is_the_shortest_sequence_as_a_program_that_runs():
    message = failure_of(STATEFUL_MUTANTS[0].spec, CI)
    program = message.split("The sequence, as a program:\n", 1)[1]
    # The warm-up lasts three calls: the fourth is the first wrong one (the closing
    # call every sequence ends with, after module.eval()).
    assert program.count("out = module(") == 4, program
    assert program.rstrip().endswith("# <- step 5 fails"), program
    assert "from tests.stateful_mutants import WarmUpMyLinear" in program
    namespace = {}
    exec(compile(program, "<the printed program>", "exec"), namespace)
    assert isinstance(namespace["module"], WarmUpMyLinear) and namespace["module"].calls == 4


class _RaisesAfterThreeCalls(torch.nn.Module):
    """Correct for three calls, then its forward raises (a cache that overflows, say)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, X):
        self.calls += 1
        if self.calls > 3:
            raise IndexError("cache slot 3 is out of range")
        return X - X.mean()


def test_a_forward_that_raises_mid_sequence_is_the_layers_failure_with_its_program():
    spec = dataclasses.replace(LESSON_SPECS[0], name="RaisesAfterThreeCalls", module=_RaisesAfterThreeCalls)
    message = failure_of(spec, CI)
    assert message.startswith(f"{PROPERTY} failed on RaisesAfterThreeCalls: "), message
    assert "forward (_RaisesAfterThreeCalls) raised IndexError on a valid input" in message, message
    assert "cache slot 3 is out of range" in message and "The sequence, as a program:" in message, message


def test_sequences_are_bounded_by_the_profile():
    assert MAX_STEPS["dev"] < MAX_STEPS["ci"] < MAX_STEPS["nightly"]
    case = find(layer_cases(my_linear_spec), lambda case: True)
    with pytest.raises(NoSuchExample):
        find(steps_for(case, 3), lambda steps: len(steps) > 3, settings=settings(max_examples=200, database=None))


def test_the_readme_example_is_what_the_property_prints():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert readme_example() in readme, "regenerate the README's example with: python -m tests.stateful_mutants"
    assert f"({MAX_STEPS['ci']} under `ci`, {MAX_STEPS['nightly']} under `nightly`)" in readme
