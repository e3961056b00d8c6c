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


def pytest_terminal_summary(terminalreporter):
    """Show what a self-test recorded with ``record_property("shown", text)``, even when it passed
    (the shared example database's two runs: how many examples each needed)."""
    lines = [
        value
        for report in terminalreporter.stats.get("passed", [])
        if report.when == "call"
        for name, value in report.user_properties
        if name == "shown"
    ]
    if lines:
        terminalreporter.section("shown by the self-tests")
        for line in lines:
            terminalreporter.write_line(line)
