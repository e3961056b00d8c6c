"""The Hypothesis profile a run loaded (the profiles themselves are registered by the plugin).

Its own module, free of torch, so that the plugin and the properties
(``variants`` picks its compile backend by profile) can both read it.
"""

from __future__ import annotations

from hypothesis import settings

__all__ = ["profile_name"]


def profile_name() -> str:
    """The loaded Hypothesis profile, without the suffixes of profiles derived from it
    (``nightly-with-example-db`` is ``nightly``)."""
    return settings.get_current_profile_name().split("-with-")[0]
