"""The mutation self-test: the gate catches every realistic bug in tests/mutants.py.

Each (mutant, property) pair listed there must fail under the ``ci`` profile's
example count; the correct lesson layers pass the whole catalogue
(tests/test_core_invariants.py).  A listed property that stops catching its
mutant fails here, so the README's bug table cannot drift from the truth.
"""

from pathlib import Path

import pytest
from hypothesis import Phase, settings

from properties import check_layer, registered_properties
from tests.mutants import MUTANTS, markdown_table

# The ci profile's examples, without shrinking (only "is it caught?" matters
# here) and without the example database (so no test seeds another).
CI_WITHOUT_SHRINKING = settings(
    settings.get_profile("ci"), database=None, phases=[Phase.explicit, Phase.generate]
)

PAIRS = [(m.spec, prop) for m in MUTANTS for prop in sorted(m.caught_by)]


@pytest.mark.parametrize("spec, prop", PAIRS, ids=[f"{s.name}-{p}" for s, p in PAIRS])
def test_property_catches_mutant(spec, prop):
    with pytest.raises(Exception) as failure:
        check_layer(spec, [prop], settings=CI_WITHOUT_SHRINKING)
    # A configuration error would mean the spec is misread, not the layer caught.
    from properties import SpecError

    assert not isinstance(failure.value, SpecError), failure.value


def test_every_mutant_names_real_properties():
    known = {p.name for p in registered_properties()}
    for mutant in MUTANTS:
        assert mutant.caught_by, mutant.spec.name
        assert mutant.caught_by <= known, mutant.caught_by - known


def test_readme_bug_table_is_current():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README table with: python -m tests.mutants"
