"""A pytest plugin that records when each test ran: ``-p benchmarks.timeline --timeline=DIR``.

Each process that runs tests (the only one with ``-n 0``, every xdist worker
otherwise) writes ``DIR/<worker>.json``: wall-clock (``time.time()``) start and
end of each test's whole protocol (setup, call, teardown, reporting), and when
the process was created and when it had collected the tests, which split its
start-up.  Wall clock, so that the timelines of several processes share one
time axis with the launch and exit times ``benchmarks.scaling`` takes around the run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path

import pytest

_tests: list[tuple[str, float, float]] = []
_phases: dict[str, float | None] = {}


def _process_created() -> float | None:
    """Wall-clock time the kernel created this process (Linux's /proc; None elsewhere)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime: clock ticks after boot
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--timeline", metavar="DIR", help="write when each test started and ended to DIR/<worker>.json")


def pytest_configure(config: pytest.Config) -> None:
    _phases["created"] = _process_created()


def pytest_collection_finish(session: pytest.Session) -> None:
    _phases["collected"] = time.time()


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
    path.write_text(json.dumps({"worker": worker, "tests": _tests, **_phases}), encoding="utf-8")
