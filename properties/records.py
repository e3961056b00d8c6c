"""Figures written into the docs by the commands that measure them, never typed.

A command (``python -m benchmarks.run``, ``python -m properties.soak``) owns a
section of a Markdown file between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` and replaces it with what it measured, headed by the
machine, the versions and the date.

Tables of what the code defines (the built-in properties, ``LayerSpec``'s
fields) are sections too, listed in ``GENERATED``: ``python -m
properties.records --docs`` rewrites them, ``--check`` says which no longer
match the code (``tests/test_readme.py`` runs it).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
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


def processor() -> str:
    """The CPU model and the kernels torch dispatches to on it (CPUID, or ``ATEN_CPU_CAPABILITY``):
    processors and kernel paths round the same layer differently, so every record names both."""
    import torch

    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    return f"{cpu_model()} (torch's {capability} kernels)"


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> str:
    """The CPU (``processor``), the GPU if torch sees one, Python, torch and Hypothesis: one line."""
    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"{processor()}, {os.cpu_count() or 1} cores{gpu}, {platform.system()} {platform.machine()}; "
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


# Sections generated from the code, not measured: (file from the repository
# root, section name, "module:function" returning the section's text). The
# functions are named, not imported, so that this module stays free of torch.
GENERATED: list[tuple[str, str, str]] = [
    ("README.md", "properties", "properties.tables:property_families"),
    ("docs/properties.md", "properties", "properties.tables:property_table"),
    ("README.md", "spec-fields", "properties.tables:spec_field_groups"),
    ("docs/spec-fields.md", "spec-fields", "properties.tables:spec_field_table"),
    ("docs/references.md", "tolerance-mirrors", "properties.tables:tolerance_mirrors"),
]


def read_section(path: Path, name: str) -> str:
    """What lies between the markers ``name`` in ``path``, stripped."""
    start, end = markers(name)
    problem = missing_section(path, name)
    if problem:
        raise SystemExit(problem)
    return path.read_text(encoding="utf-8").split(start, 1)[1].split(end, 1)[0].strip()


def generated_sections(*, root: Path) -> list[tuple[Path, str, str]]:
    """Each generated section as the code renders it now: (file, name, text)."""
    out = []
    for relative, name, function in GENERATED:
        module, _, attribute = function.partition(":")
        out.append((root / relative, name, getattr(importlib.import_module(module), attribute)().strip()))
    return out


def stale_sections(*, root: Path) -> list[str]:
    """The generated sections under ``root`` that differ from what the code renders, as messages."""
    stale = []
    for path, name, text in generated_sections(root=root):
        problem = missing_section(path, name)
        if problem is None and read_section(path, name) != text:
            problem = f"{path.relative_to(root)}: section {name!r} no longer says what the code does"
        stale += [problem] if problem else []
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m properties.records", description="The docs' sections generated from the code."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--docs", action="store_true", help="rewrite every generated section")
    action.add_argument("--check", action="store_true", help="list the generated sections that drifted; exit 1 if any")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root (default: here)")
    args = parser.parse_args(argv)
    for relative, name, _ in GENERATED:  # every file and marker first: a wrong root costs no half-written docs
        if problem := missing_section(args.root / relative, name):
            parser.error(problem)
    if args.check:
        stale = stale_sections(root=args.root)
        print("\n".join(stale) + ("\nregenerate with: python -m properties.records --docs" if stale else "up to date"))
        return 1 if stale else 0
    for path, name, text in generated_sections(root=args.root):
        write_section(path, name, text)
        print(f"updated {path} ({name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
