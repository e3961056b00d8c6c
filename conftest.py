"""Wiring only: register the lesson's layers with the gate.

The plugin itself (profiles, options, collection of the gate) is
``properties.plugin``, loaded through its pytest11 entry point; the layers'
specs are in ``layers/specs.py``.  They are registered by import path, so
that processes that collect no tests (the pytest-xdist controller) do not
import them, nor torch.  Choose a profile with ``--hypothesis-profile=ci``
or ``HYPOTHESIS_PROFILE=ci``.
"""

from properties import register

register("layers.specs:LESSON_SPECS")
