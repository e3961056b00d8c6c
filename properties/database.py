"""Where Hypothesis keeps failing and covering examples (see issue: shared example database).

Placeholder wiring: ``add_options`` and ``configure`` are called by the plugin.
"""

from __future__ import annotations

import pytest


def add_options(group: pytest.OptionGroup) -> None:
    """Add this module's command-line options to the plugin's group."""


def configure(config: pytest.Config) -> None:
    """Install the selected example database into the loaded Hypothesis profile."""
