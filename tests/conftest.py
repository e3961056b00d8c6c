"""Shared helpers for the framework's self-tests."""

import pytest
from hypothesis import settings

# Enough examples to find each planted bug with margin, few enough to stay fast;
# the database is off so that one test's failures never seed another's.
GATE_SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True, print_blob=False)


@pytest.fixture
def gate_settings():
    return GATE_SETTINGS

pytest_plugins = ["pytester"]
