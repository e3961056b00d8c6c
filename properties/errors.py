"""Errors that mean "the framework was told something wrong", not "the layer is wrong"."""

__all__ = ["SpecError"]

# The skip reason of a layer's properties when its spec fails spec_is_usable
# (the report shows these cells as "not run", under the one CONFIG).
UNUSABLE = "not run: the spec is unusable"


class SpecError(Exception):
    """A layer spec, a property declaration or a selection is unusable.

    The message names the spec (or option) and the field, and says what to change.
    It is never raised because a layer computed something wrong.
    """
