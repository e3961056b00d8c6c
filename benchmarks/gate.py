"""The gate: examples per second of each property on each layer, and its wall time."""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import StopTest, UnsatisfiedAssumption

from properties import runner
from properties.runner import registered_properties

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class PropertyRate:
    prop: str
    family: str
    layer: str
    examples: int
    discarded: int
    seconds: float
    outcome: str

    @property
    def per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


def property_rates(
    examples: int,
    *,
    skip_families: tuple[str, ...] = (),
    log: Callable[[str], None] = lambda _: None,
) -> list[PropertyRate]:
    """Time ``check_layer(spec, [prop])`` for every applicable (property, lesson layer).

    Generate phase only, no database, derandomized (the same examples every
    run).  The examples actually run are counted, so properties that scale
    their count (the variants: a tenth, at least two) report what ran.
    """
    from layers.specs import LESSON_SPECS

    base = settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    calls = [0, 0]  # examples that reached the check, calls Hypothesis abandoned while drawing
    original = runner.check_property_once

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            result = original(*args, **kwargs)
        except (StopTest, UnsatisfiedAssumption):
            calls[1] += 1  # an overrun or rejected draw: Hypothesis discards it, it does not count
            raise
        except BaseException:
            calls[0] += 1
            raise
        calls[0] += 1
        return result

    rates = []
    runner.check_property_once = counting  # check_layer's tests look it up at call time
    try:
        # One untimed example first: process-wide first-use costs (lazy torch
        # imports, Hypothesis caches) are not charged to whichever property runs first.
        warm = next(p for p in registered_properties() for s in LESSON_SPECS if p.not_applicable_because(s) is None)
        warm_spec = next(s for s in LESSON_SPECS if warm.not_applicable_because(s) is None)
        try:
            runner.check_layer(warm_spec, [warm.name], settings=settings(base, max_examples=1))
        except (Exception, pytest.skip.Exception):
            pass  # reported, if it recurs, by the timed run below
        for prop in registered_properties():
            if prop.family in skip_families:
                continue
            for spec in LESSON_SPECS:
                if prop.not_applicable_because(spec) is not None:
                    continue
                calls[:] = [0, 0]
                outcome = "ok"
                start = time.perf_counter()
                try:
                    runner.check_layer(spec, [prop.name], settings=base)
                except pytest.skip.Exception as skipped:
                    outcome = f"skipped: {str(skipped.msg).splitlines()[0][:60]}"
                except Exception as error:  # a failure is reported, not raised: this is a benchmark
                    first = (str(error).splitlines() or [""])[0].replace("|", "\\|")
                    outcome = f"FAILED: {type(error).__name__}: {first[:160]}"
                seconds = time.perf_counter() - start
                ran = calls[0]
                if ran == 0 and outcome == "ok":  # the runner no longer calls check_property_once: estimate
                    ran = examples if prop.examples_scale == 1.0 else max(2, int(examples * prop.examples_scale))
                    outcome = "ok (examples estimated)"
                rates.append(PropertyRate(prop.name, prop.family, spec.name, ran, calls[1], seconds, outcome))
            log(f"  {prop.name} done")
    finally:
        runner.check_property_once = original
    return rates


GATE_COMMAND = [sys.executable, "-m", "pytest", "conftest.py", "-p", "no:cacheprovider", "-q", "--hypothesis-profile=ci"]


@dataclasses.dataclass
class GateRun:
    workers: str
    seconds: float
    cpu_seconds: float  # user + system time of the pytest processes (controller and workers)
    returncode: int
    summary: str

    @property
    def command(self) -> str:
        return "python -m pytest conftest.py -p no:cacheprovider -q --hypothesis-profile=ci -n " + self.workers


def gate_wall_time(workers: str) -> GateRun:
    """Run the default gate (``conftest.py``, ``ci`` profile) in a subprocess and time it."""
    return _timed([*GATE_COMMAND, "-n", workers], workers)


# What a user runs (README "Install and run"), as a user runs it: no CI
# variable, so the default dev profile; and what .ci/run adds (the slow
# self-tests).
USER_COMMANDS = (
    ("pytest -n auto", []),
    ("pytest conftest.py -n auto", ["conftest.py"]),
    ('pytest -n auto -m slow', ["-m", "slow"]),
)


def user_command_wall_time(label: str, args: list[str]) -> GateRun:
    """Run one of ``USER_COMMANDS`` in a subprocess from the repository root and time it."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return _timed([sys.executable, "-m", "pytest", *args, "-n", "auto", "-p", "no:cacheprovider", "-q"], label, env)


def _timed(command: list[str], label: str, env: dict[str, str] | None = None) -> GateRun:
    if env is None:
        env = dict(os.environ)
    env = {k: v for k, v in env.items() if not k.startswith(("PYTEST_", "HYPOTHESIS_"))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed|error)", line)), "")
    summary = re.sub(r"\s+in [\d.]+s.*$", "", summary.strip("= "))
    return GateRun(label, seconds, cpu, done.returncode, summary or f"exit code {done.returncode}")
