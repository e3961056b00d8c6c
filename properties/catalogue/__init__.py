"""The property catalogue: each property written once, run on every layer whose
spec declares the facts it ``requires``.

A property receives a drawn ``LayerCase`` and raises ``AssertionError`` (or a
subclass) saying what is wrong.  Where an example gives the property nothing
to claim (an intermediate may overflow, the input is empty), it records a
Hypothesis ``event`` and returns, so ``--hypothesis-show-statistics`` shows
how often that happened.  One module per family; the family is the marker.
"""

# Import order is registration order, and so collection order: the most
# expensive families first (compiling, training steps, gradcheck, sampling, the
# meta device's first use), so that pytest-xdist hands them out early and the
# workers finish together instead of one waiting on a late long test.
# robustness imports batch, equivalence and algebra between its own properties
# (the order the cheap families have always been collected in): listed after it,
# they are already registered.
from properties.catalogue import (  # noqa: F401  (importing registers them)
    variants,
    stateful,
    gradients,
    initialization,
    structure,
    spec,
    robustness,
    batch,
    equivalence,
    algebra,
    laws,
    serialization,
)
