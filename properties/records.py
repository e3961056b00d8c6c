"""Figures written into the docs by the commands that measure them, never typed.

A command (``python -m benchmarks.run``, ``python -m properties.soak``) owns a
section of a Markdown file between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` and replaces it with what it measured, headed by the
machine, the versions and the date.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> str:
    """The CPU, the GPU if torch sees one, Python, torch and Hypothesis: one line."""
    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"{cpu_model()}, {os.cpu_count() or 1} cores{gpu}, {platform.system()} {platform.machine()}; "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, hypothesis {version('hypothesis')}"
    )


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def missing_section(path: Path, name: str) -> str | None:
    """Why ``write_section(path, name, ...)`` would fail, or None: asked before
    measuring, so that a wrong name or file costs no run."""
    start, end = markers(name)
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as error:
        return f"{path}: cannot read it ({error.strerror}); run from the repository root or name another file"
    if start not in content or end not in content:
        return f"{path}: the markers {start} / {end} are not in it; add them where the record belongs"
    return None


def write_section(path: Path, name: str, text: str) -> None:
    """Replace what lies between the markers ``name`` in ``path`` with ``text``."""
    start, end = markers(name)
    problem = missing_section(path, name)
    if problem:
        raise SystemExit(problem)
    content = path.read_text(encoding="utf-8")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text.rstrip()}\n{end}{tail}", encoding="utf-8")
