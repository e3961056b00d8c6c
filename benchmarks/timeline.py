"""A pytest plugin that records when each test ran: ``-p benchmarks.timeline --timeline=DIR``.

Each process that runs tests (the only one with ``-n 0``, every xdist worker
otherwise) writes ``DIR/<worker>.json``: wall-clock (``time.time()``) start and
end of each test's whole protocol (setup, call, teardown, reporting).  Wall
clock, so that the timelines of several processes share one time axis with
the launch and exit times ``benchmarks.scaling`` takes around the run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path

import pytest

_tests: list[tuple[str, float, float]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--timeline", metavar="DIR", help="write when each test started and ended to DIR/<worker>.json")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    start = time.time()
    try:
        return (yield)
    finally:
        _tests.append((item.nodeid, start, time.time()))


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.getoption("timeline")
    if not directory or not _tests:
        return  # an xdist controller runs no tests
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    path = Path(directory) / f"{worker}.json"
    path.write_text(json.dumps({"worker": worker, "tests": _tests}), encoding="utf-8")
