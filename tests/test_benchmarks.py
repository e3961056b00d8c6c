"""Smoke tests of the benchmarks: `benchmarks.run --quick` and `benchmarks.scaling --quick` print their tables."""

import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks.gate
import benchmarks.scaling
from benchmarks.scaling import SECTION, lpt_makespan
from properties.records import markers

ROOT = Path(__file__).resolve().parent.parent


def run_module(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """``python -m <args>`` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_quick_benchmark_prints_the_tables(tmp_path):
    pytest.importorskip("numpy")
    output = tmp_path / "bench.md"
    # the gallery's laws (section 3b) add a few seconds to the quick run
    done = run_module("benchmarks.run", "--quick", "--output", str(output), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for heading in (
        "**Machine:**",
        "### 1. Tensors per second",
        "### 2. Shrinking",
        "### 3. Examples per second of each property on each layer",
        "### 3b. Examples per second on the gallery's families",
        "### 4. Gate wall time",
        "### Targets",
    ):
        assert heading in done.stdout, f"{heading!r} missing from:\n{done.stdout[-3000:]}"
    assert "| 64×64 | project `tensors()` |" in done.stdout
    assert "| `gradient_flow` | gradients | MyLinear |" in done.stdout
    assert "| `rows_sum_to_one` | laws | softmax |" in done.stdout
    assert output.read_text(encoding="utf-8") == done.stdout.rstrip("\n") + "\n"


@pytest.mark.slow
def test_quick_scaling_report_projects_and_writes_between_the_markers(tmp_path):
    START, END = markers(SECTION)
    output = tmp_path / "scaling.md"
    output.write_text(f"# Scaling\n\nintro\n\n{START}\nold figures\n{END}\n\nafter\n", encoding="utf-8")
    done = run_module("benchmarks.scaling", "--quick", "--output", str(output), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for heading in ("**Machine:**", "### Measured", "### Start-up", "### Durations (`-n 0`)", "### Projection", "### Targets"):
        assert heading in done.stdout, f"{heading!r} missing from:\n{done.stdout[-3000:]}"
    assert "| `-n 0` | 0 |" in done.stdout and "| `-n 2 --dist=load` | 2 |" in done.stdout
    assert "| 16 |" in done.stdout  # a projected row
    written = output.read_text(encoding="utf-8")
    assert "old figures" not in written and written.startswith("# Scaling\n\nintro\n\n" + START)
    assert written.rstrip().endswith("after") and "### Projection" in written


def test_lpt_schedule_of_durations():
    assert lpt_makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7.0  # LPT's classic 7/6 case: the optimum is 6
    assert lpt_makespan([5.0, 1.0, 1.0], 4) == 5.0  # the longest test is the floor
    assert lpt_makespan([1.0] * 8, 1) == 8.0


def test_scaling_refuses_an_output_without_the_section_s_markers_before_measuring(tmp_path):
    output = tmp_path / "scaling.md"
    output.write_text(f"{markers(SECTION)[0]}\n{markers(SECTION)[1]}\n", encoding="utf-8")
    done = run_module("benchmarks.scaling", "--output", str(output), "--section", "scaling-2core", timeout=60)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "<!-- scaling-2core:start -->" in done.stderr and "add them where the record belongs" in done.stderr
    assert "Machine" not in done.stdout  # nothing was measured


def test_the_bytecode_note_names_the_packages_without_a_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert benchmarks.scaling._bytecode_note() == ""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    # A package whose bytecode no process could ever have cached: a fresh one.
    (tmp_path / "properties").mkdir()
    (tmp_path / "properties" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "properties")
    note = benchmarks.scaling._bytecode_note()
    assert "PYTHONDONTWRITEBYTECODE is set" in note and "properties" in note.split("had no cached bytecode")[0]


def _synthetic_run(workers: str, wall: float, extra: tuple[str, ...], phases: dict) -> "benchmarks.scaling.TimedRun":
    """A gate run launched at t=100 s: one 1-second test per process, starting at 102 s."""
    run = benchmarks.gate.GateRun(workers, wall, wall, 0, "2 passed", extra, 100.0, 100.0 + wall)
    tests = {name: [(f"conftest.py::test_{name}", 102.0, 103.0)] for name in phases}
    return benchmarks.scaling.TimedRun(run, tests, phases)


def test_the_median_run_of_each_round_is_reported_with_every_round_s_wall_time():
    serial = [_synthetic_run("0", wall, (), {"main": {"created": 100.0, "collected": 101.5}}) for wall in (9.0, 7.0, 8.0)]
    phases = {"gw0": {"created": 100.3, "collected": 101.6}, "gw1": {"created": 100.5, "collected": 101.9}}
    parallel = [_synthetic_run("2", wall, ("--dist=load",), phases) for wall in (4.0, 5.0, 3.0)]
    assert benchmarks.scaling.median_run(serial).run.seconds == 8.0
    assert benchmarks.scaling.median_run(serial[:2]).run.seconds == 7.0  # an even count: the faster middle run
    scaling = benchmarks.scaling.Scaling(
        "**Machine:** test",
        benchmarks.scaling.median_run(serial),
        [benchmarks.scaling.median_run(parallel)],
        {"-n 0": [9.0, 7.0, 8.0], "-n 2 --dist=load": [4.0, 5.0, 3.0]},
    )
    text = benchmarks.scaling.render(scaling)
    assert "`-n 0`: 9.0, 7.0, 8.0 s in 3 rounds" in text and "`-n 2 --dist=load`: 4.0, 5.0, 3.0 s" in text
    assert "| `-n 2 --dist=load` | 2 | 4.0 | 4.0 | 2.00× |" in text  # median 8 s ÷ median 4 s
    # Start-up: the last worker created 0.5 s after launch, the slowest took 1.4 s to collect,
    # the last collection ended at 1.9 s, the first tests started at 2 s.
    assert "| `-n 2 --dist=load` | 0.5 | 1.4 | 1.9 | 2.0 |" in text


def test_start_up_phases_unknown_to_the_system_are_shown_as_unknown():
    timed = _synthetic_run("0", 5.0, (), {"main": {"created": None, "collected": 101.5}})
    scaling = benchmarks.scaling.Scaling("**Machine:** test", timed, [_synthetic_run("2", 3.0, ("--dist=load",), {"gw0": {}})])
    text = benchmarks.scaling.render(scaling)
    assert "| `-n 0` | — | — | 1.5 | 2.0 |" in text and "| `-n 2 --dist=load` | — | — | — | 2.0 |" in text
    assert "rounds" not in text.split("### Measured")[0]


def test_scaling_refuses_rounds_below_one():
    done = run_module("benchmarks.scaling", "--rounds", "0", timeout=60)
    assert done.returncode == 2 and "--rounds 0: give 1 or more" in done.stderr
