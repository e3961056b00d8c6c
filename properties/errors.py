"""Errors that mean "the framework was told something wrong", not "the layer is wrong"."""

__all__ = ["SpecError"]


class SpecError(Exception):
    """A layer spec, a property declaration or a selection is unusable.

    The message names the spec (or option) and the field, and says what to change.
    It is never raised because a layer computed something wrong.
    """
