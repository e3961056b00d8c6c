"""The docs' tables of what the code defines, generated, never typed: the
built-in properties (from the registry) and ``LayerSpec``'s fields (from its
docstring, the one place each field is explained).

``python -m properties.records --docs`` writes them between their markers
(``records.GENERATED`` says where); ``tests/test_readme.py`` fails when a file
no longer says what the code does.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

from properties import catalogue  # noqa: F401  (importing registers the built-in properties)
from properties import tolerances
from properties.names import dtype_name
from properties.registry import LayerProperty, registered_properties
from properties.spec import LayerSpec

__all__ = [
    "property_families", "property_table", "spec_field_docs", "spec_field_groups", "spec_field_table",
    "tolerance_mirrors",
]

# The order a reader meets the families in (the registry's is by cost, most
# expensive first); a family not named here follows, in registration order.
READING_ORDER = (
    "equivalence", "algebra", "laws", "robustness", "batch", "gradients",
    "structure", "serialization", "stateful", "initialization", "spec", "variants",
)


def markdown(text: str) -> str:
    """Docstring text (reStructuredText ``code``) as one line of a Markdown table cell."""
    parts = re.split(r"``(.*?)``", " ".join(text.split()))
    # Odd parts were code; elsewhere a * would start emphasis (a*x + b*y). A | starts a new cell, even in code.
    return "".join(f"`{part}`" if i % 2 else part.replace("*", r"\*") for i, part in enumerate(parts)).replace("|", r"\|")


def _code(names: Any) -> str:
    return ", ".join(f"`{name}`" for name in names)


def builtin_properties() -> list[LayerProperty]:
    """The catalogue's properties (not a project's own), in the order a reader meets them."""
    props = [p for p in registered_properties() if p.check.__module__.startswith("properties.catalogue.")]
    families = list(dict.fromkeys(p.family for p in props))
    order = [f for f in READING_ORDER if f in families] + [f for f in families if f not in READING_ORDER]
    return sorted(props, key=lambda p: order.index(p.family))  # stable: registration order within a family


def property_families() -> str:
    """The README's table: one row per family, each property with the spec facts it needs."""
    rows = ["| family (marker) | properties (the spec fields each needs) |", "|---|---|"]
    props = builtin_properties()
    for family in dict.fromkeys(p.family for p in props):
        cells = [f"`{p.name}`" + (f" ({_code(p.requires)})" if p.requires else "") for p in props if p.family == family]
        rows.append(f"| {family} | {', '.join(cells)} |")
    return "\n".join(rows)


def _runs_on(prop: LayerProperty) -> str:
    dtypes = ", ".join(dtype_name(d) for d in prop.dtypes) + " only" if prop.dtypes else "the spec's dtypes"
    share = f"; {prop.examples_scale:g} × the profile's count" if prop.examples_scale != 1 else ""
    return dtypes + share


def property_table() -> str:
    """docs/properties.md's table: every built-in property, what it checks, what it needs."""
    rows = [
        "| property | family (marker) | checks | needs from the spec | examples |",
        "|---|---|---|---|---|",
    ]
    for p in builtin_properties():
        needs = [_code(p.requires)] if p.requires else []
        needs += ["a float input"] if p.float_input else []
        rows.append(
            f"| `{p.name}` | {p.family} | {markdown(p.description)} | {'; '.join(needs) or '—'} | {_runs_on(p)} |"
        )
    return "\n".join(rows)


_FIELD_LINE = re.compile(r"``(\w+)``(?:, ``(\w+)``)*")


def spec_field_docs(*, spec_class: type = LayerSpec) -> list[tuple[str, list[tuple[tuple[str, ...], str]]]]:
    """``spec_class``'s docstring, parsed: ``[(heading, [(field names, explanation)])]``.

    The docstring lists fields under headings (``Building and feeding:``): an
    unindented line naming one or more fields (````name````, ````a````, ````b````), then
    its explanation, indented.  Every dataclass field must be explained exactly
    once, and nothing else: an error names the field to add or remove.
    """
    lines = inspect.cleandoc(spec_class.__doc__ or "").splitlines()
    sections: list[tuple[str, list[tuple[tuple[str, ...], str]]]] = []
    heading: list[str] = []
    for line in lines[1:]:  # the first line is the summary
        if not line.strip():
            continue
        if line.startswith(" "):
            if not (sections and sections[-1][1]):
                raise ValueError(f"{spec_class.__name__}'s docstring: {line.strip()!r} explains no field")
            names, text = sections[-1][1][-1]
            sections[-1][1][-1] = (names, f"{text} {line.strip()}".strip())
        elif _FIELD_LINE.fullmatch(line) and sections:
            sections[-1][1].append((tuple(re.findall(r"``(\w+)``", line)), ""))
        else:
            heading.append(line)
            if line.endswith(":"):  # a heading may take several lines
                sections.append((" ".join(heading)[:-1], []))
                heading = []
    documented = [name for _, entries in sections for names, _ in entries for name in names]
    fields = [f.name for f in dataclasses.fields(spec_class)]
    problems = [f"field {f!r} is not explained" for f in fields if f not in documented]
    problems += [f"{name!r} is explained but is no field" for name in documented if name not in fields]
    problems += [f"{name!r} is explained twice" for name in dict.fromkeys(documented) if documented.count(name) > 1]
    if heading:
        problems.append(f"{' '.join(heading)!r} is neither a heading (ending in ':') nor a field")
    if problems:
        raise ValueError(
            f"{spec_class.__name__}'s docstring: {'; '.join(problems)}. Each field gets an unindented "
            "line ``name`` under a heading, then its explanation, indented."
        )
    return sections


def _short(heading: str) -> str:
    """``The input domain (inputs outside it ...)`` -> ``the input domain``."""
    short = heading.split(" (", 1)[0]
    return short[0].lower() + short[1:]


def spec_field_groups() -> str:
    """The README's list: the fields' names, one line per heading of the docstring."""
    return "\n".join(
        f"- {_short(heading)}: {_code(name for names, _ in entries for name in names)}"
        for heading, entries in spec_field_docs()
    )


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return f"`{field.default!r}`"
    if field.default_factory is not dataclasses.MISSING:
        return f"`{field.default_factory()!r}`"
    return "required"


def spec_field_table() -> str:
    """docs/spec-fields.md's tables: each field, its default and its explanation, by heading."""
    fields = {f.name: f for f in dataclasses.fields(LayerSpec)}
    out = []
    for heading, entries in spec_field_docs():
        out += [f"### {markdown(heading)}", "", "| field | default | meaning |", "|---|---|---|"]
        out += [
            f"| {_code(names)} | {'; '.join(_default(fields[n]) for n in names)} | {markdown(text)} |"
            for names, text in entries
        ]
        out.append("")
    return "\n".join(out)


def arguments(function: Any) -> str:
    """``function``'s parameters as a call reads them: ``(input, dim, *, dtype=None)``, no annotations."""
    parts: list[str] = []
    starred = False  # a bare * or a *args already ends the positional parameters
    for p in inspect.signature(function).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not starred:
            parts.append("*")
        starred = starred or p.kind in (p.VAR_POSITIONAL, p.KEYWORD_ONLY)
        name = f"*{p.name}" if p.kind is p.VAR_POSITIONAL else p.name
        parts.append(name if p.default is p.empty else f"{name}={p.default!r}")
    return f"({', '.join(parts)})"


def tolerance_mirrors() -> str:
    """docs/references.md's table: each ``tol`` operation, the torch function it mirrors
    (``tolerances.MIRRORS``) and the arguments it takes, in that function's order."""
    rows = ["| operation | mirrors | arguments |", "|---|---|---|"]
    for name, target in tolerances.MIRRORS.items():
        rows.append(f"| `tol.{name}` | `{target}` | `{arguments(getattr(tolerances, name))}` |")
    return "\n".join(rows)
