"""Errors that mean "the framework was told something wrong", not "the layer is wrong"."""

from __future__ import annotations

__all__ = ["SpecError", "check_range", "field_error"]

# The skip reason of a layer's properties when its spec fails spec_is_usable
# (the report shows these cells as "not run", under the one CONFIG).
UNUSABLE = "not run: the spec is unusable"


class SpecError(Exception):
    """A layer spec, a property declaration or a selection is unusable.

    The message names the spec (or option) and the field, and says what to change.
    It is never raised because a layer computed something wrong.
    """


def field_error(spec_name: str, field: str, problem: str, fix: str = "", *, colon: bool = True) -> SpecError:
    """The error of one spec field: ``LayerSpec 'name', field 'field': problem. fix``.

    ``colon=False`` for a problem that says what the field did (``"raised ..."``,
    ``"returned ..."``): it follows the field's name directly.  Without ``fix``
    the message ends after the problem.
    """
    text = f"LayerSpec {spec_name!r}, field {field!r}{': ' if colon else ' '}{problem}."
    return SpecError(f"{text} {fix}" if fix else text)


def check_range(value: object, *, what: str) -> str | None:
    """What is wrong with ``value`` as a ``(min, max)`` range of whole numbers with
    ``0 <= min <= max``, as ``"<what> is not (min, max) with 0 <= min <= max"``; None if nothing."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value) and 0 <= value[0] <= value[1]:
        return None
    return f"{what} is not (min, max) with 0 <= min <= max"
