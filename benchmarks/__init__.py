"""Benchmarks: generation speed, shrinking, per-property rates and gate wall time.

Run ``python -m benchmarks.run`` from the repository root (numpy is needed:
``pip install -e ".[bench]"``).  Every figure is measured side by side in one
run and reported as a rate or a ratio; nothing here is a timed test.
"""
