"""The four invariants the user named: each passes on the correct layers and
fails on a broken variant, with a message that says what is wrong."""

import pytest

from layers.specs import LESSON_SPECS
from properties import check_layer, registered_properties
from tests.mutants import MUTANTS, TEXTBOOK

CORE = ["zero_mean_after_centering", "matches_equivalents", "nonnegative_output", "gradient_flow"]


@pytest.mark.slow  # the whole catalogue on each lesson layer, as the gate (conftest.py) already does by default
@pytest.mark.parametrize("spec", LESSON_SPECS, ids=lambda s: s.name)
def test_correct_layers_pass_every_applicable_property(spec, gate_settings):
    check_layer(spec, settings=gate_settings)


CORE_PAIRS = [(m.spec, p) for m in MUTANTS for p in sorted(m.caught_by & set(CORE))]


@pytest.mark.parametrize("spec, prop", CORE_PAIRS, ids=[f"{s.name}-{p}" for s, p in CORE_PAIRS])
def test_broken_variant_is_caught(spec, prop, gate_settings):
    with pytest.raises(AssertionError):
        check_layer(spec, [prop], settings=gate_settings)


def test_each_core_invariant_catches_some_mutant():
    assert set(CORE) <= {p for _, p in CORE_PAIRS}
    assert set(CORE) <= {p.name for p in registered_properties()}


def test_textbook_failure_names_layer_parameters_and_minimal_example(gate_settings):
    with pytest.raises(AssertionError) as failure:
        check_layer(TEXTBOOK.spec, ["gradient_flow"], settings=gate_settings)
    message = str(failure.value)
    notes = "\n".join(getattr(failure.value, "__notes__", []))
    assert "TextbookMyLinear" in message
    assert "no gradient: weight, bias" in message
    # Shrunk to the simplest example: one feature, one unit, a single zero.
    assert "constructor_args={'in_units': 1, 'units': 1}" in notes
    assert "shape=(1,)" in notes and "values=[0.0]" in notes
