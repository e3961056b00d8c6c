"""Shared helpers for the framework's self-tests."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Enough examples to find each planted bug with margin, few enough to stay fast;
# the database is off so that one test's failures never seed another's.
GATE_SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True, print_blob=False)


@pytest.fixture
def gate_settings():
    return GATE_SETTINGS

pytest_plugins = ["pytester"]

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _lesson_layers_importable_in_subprocesses(monkeypatch):
    """``layers`` is not installed (only the framework is): the pytest runs that
    self-tests start in other directories find it on PYTHONPATH, as the
    repository's own runs find it under the rootdir."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(REPOSITORY) + (os.pathsep + path if path else ""))


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
