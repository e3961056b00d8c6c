"""Markdown tables and the description of the machine a run measured."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

from properties.records import processor, utc_now, version as _version


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: all left)."""
    align = align or "l" * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> str:
    """One paragraph naming the machine, the software and the date."""
    import torch

    cores = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    usable_text = "" if usable == cores else f" ({usable} usable by this process)"
    now = utc_now()
    return (
        f"**Machine:** {processor()}, {cores} cores{usable_text}, {platform.system()} {platform.machine()}; "
        f"Python {sys.version.split()[0]}, torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op threads), hypothesis {_version('hypothesis')}, "
        f"numpy {_version('numpy')}, pytest-xdist {_version('pytest-xdist')}. "
        f"**Date:** {now}. **Load average** (1/5/15 min) at the start: {load_average()}."
    )
