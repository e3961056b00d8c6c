"""Wiring only: register the lesson's layers with the gate.

The plugin itself (profiles, options, collection of the gate) is
``properties.plugin``, loaded through its pytest11 entry point; the layers'
specs are in ``layers/specs.py``.  Choose a profile with
``--hypothesis-profile=ci`` or ``HYPOTHESIS_PROFILE=ci``.
"""

from layers.specs import LESSON_SPECS
from properties import register

register(*LESSON_SPECS)
