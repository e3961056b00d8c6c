"""The property catalogue: each property written once, run on every layer whose
spec declares the facts it ``requires``.

A property receives a drawn ``LayerCase`` and raises ``AssertionError`` (or a
subclass) saying what is wrong.  Where an example gives the property nothing
to claim (an intermediate may overflow, the input is empty), it records a
Hypothesis ``event`` and returns, so ``--hypothesis-show-statistics`` shows
how often that happened.  One module per family; the family is the marker.
"""

from properties.catalogue import (  # noqa: F401  (importing registers them)
    configuration,
    behaviour,
    gradients,
    initialization,
    numerics,
    serialization,
    structure,
    variants,
)
