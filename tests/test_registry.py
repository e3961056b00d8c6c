"""``@layer_property``'s family (the pytest marker): the last part of the check's
module name unless given, so that ``-m algebra`` selects what ``algebra.py`` defines."""

import pytest

from properties import registry
from properties.errors import SpecError
from properties.runner import registered_properties


@pytest.fixture
def scratch_registry(monkeypatch):
    """Properties registered here stay out of the process's catalogue."""
    monkeypatch.setattr(registry, "_properties", dict(registry._properties))
    return registry._properties


def _check_in(module: str):
    def keeps_the_batch_shape(case):
        """A stand-in check."""

    keeps_the_batch_shape.__module__ = module
    return keeps_the_batch_shape


def test_the_family_defaults_to_the_last_part_of_the_module_name(scratch_registry):
    registry.layer_property()(_check_in("myproj.props"))
    assert scratch_registry["keeps_the_batch_shape"].family == "props"


def test_an_explicit_family_wins_over_the_module_name(scratch_registry):
    registry.layer_property(family="shapes")(_check_in("myproj.props"))
    assert scratch_registry["keeps_the_batch_shape"].family == "shapes"


def test_a_module_name_that_is_no_marker_asks_for_a_family(scratch_registry):
    with pytest.raises(SpecError, match=r"'my-props'.*pass family="):
        registry.layer_property()(_check_in("my-props"))
    assert "keeps_the_batch_shape" not in scratch_registry


def test_each_catalogue_module_is_named_after_its_family():
    builtin = [p for p in registered_properties() if p.check.__module__.startswith("properties.catalogue.")]
    assert builtin
    assert [p.name for p in builtin if p.check.__module__ != f"properties.catalogue.{p.family}"] == []
