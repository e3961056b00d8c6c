"""Smoke test of the benchmarks: ``python -m benchmarks.run --quick`` prints its tables."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_prints_the_tables(tmp_path):
    pytest.importorskip("numpy")
    output = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,  # the gallery's laws (section 3b) add a few seconds
        check=False,
    )
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
