"""The layers under test: plain ``nn.Module``s with no dependency on the framework.

``layers.lesson`` holds the three layers of *Dive into Deep Learning* §5.4, with
``MyLinear.forward`` corrected; ``layers.known_bad`` keeps the textbook's version
verbatim so the self-tests can show the gate catching it.  ``layers.specs``
describes the lesson layers to the framework (it is the only module here that
imports ``properties``).
"""

from layers.lesson import CenteredLayer, MyLinear, MyLinearWithBuiltin

__all__ = ["CenteredLayer", "MyLinear", "MyLinearWithBuiltin"]
