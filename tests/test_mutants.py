"""The mutation self-test: the gate catches every realistic bug in tests/mutants.py.

Each (mutant, property) pair listed there must fail under the ``ci`` profile's
example count, and by the property's own assertion: the "<property> failed on
<layer>" message of ``properties.runner.check_property_once``.  A crash, a
failed health check, a Flaky error or a skip is not a detection and fails
here.  The correct lesson layers pass the whole catalogue
(tests/test_core_invariants.py).  A listed property that stops catching its
mutant fails here, so the README's bug table cannot drift from the truth.
"""

from pathlib import Path

import pytest
from _pytest.outcomes import OutcomeException
from hypothesis import Phase, settings

from properties import check_layer, registered_properties
from tests.mutants import MUTANTS, markdown_table

# The ci profile's examples, without shrinking (only "is it caught?" matters
# here) and without the example database (so no test seeds another).
CI_WITHOUT_SHRINKING = settings(
    settings.get_profile("ci"), database=None, phases=[Phase.explicit, Phase.generate]
)

PAIRS = [(m.spec, prop) for m in MUTANTS for prop in sorted(m.caught_by)]


def detection(spec, prop) -> str | None:
    """Run ``prop`` on ``spec``; None if its own assertion failed, else what happened instead."""
    try:
        check_layer(spec, [prop], settings=CI_WITHOUT_SHRINKING)
    except AssertionError as failure:
        if str(failure).startswith(f"{prop} failed on {spec.name}: "):
            return None
        return f"an AssertionError not from the property itself: {failure}"
    except (Exception, OutcomeException) as other:  # pytest.skip's exception is not an Exception
        return f"{type(other).__name__} instead of the property's assertion: {str(other)[:2000]}"
    return "it passed"


@pytest.mark.parametrize("spec, prop", PAIRS, ids=[f"{s.name}-{p}" for s, p in PAIRS])
def test_property_catches_mutant(spec, prop):
    problem = detection(spec, prop)
    assert problem is None, f"{prop} does not catch {spec.name}: {problem}"


def test_every_mutant_names_real_properties():
    known = {p.name for p in registered_properties()}
    for mutant in MUTANTS:
        assert mutant.caught_by, mutant.spec.name
        assert mutant.caught_by <= known, mutant.caught_by - known


def test_readme_bug_table_is_current():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README table with: python -m tests.mutants"


class CrashingInitMyLinear:
    """Raises while being built: a crash, which no property may count as a detection."""

    def __init__(self, in_units, units, *, device=None, dtype=None):
        raise RuntimeError("planted crash")


def test_only_the_property_s_own_assertion_counts():
    import dataclasses

    from layers.specs import my_linear_spec

    crashing = dataclasses.replace(my_linear_spec, name="CrashingInitMyLinear", module=CrashingInitMyLinear)
    assert "SpecError instead of the property's assertion" in detection(crashing, "nonnegative_output")
    assert detection(my_linear_spec, "nonnegative_output") == "it passed"
    # The property skips itself on a layer declaring train_eval_differ: a skip is no detection.
    differing = dataclasses.replace(my_linear_spec, name="DifferingMyLinear", train_eval_differ=True)
    assert "Skipped instead of the property's assertion" in detection(differing, "train_and_eval_agree")
