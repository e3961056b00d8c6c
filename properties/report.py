"""The end-of-run report: a property x layer matrix, in the terminal, Markdown and JSON.

Registered by the plugin as a pytest plugin object.  Results come from
``pytest_runtest_logreport``, which under xdist runs on the controller for
every worker's reports, so the matrix always covers the whole run.  Each gate
test carries ``("layer_gate", (layer, property))`` in its ``user_properties``,
which xdist serializes along with the report, and ``("layer_gate_coverage",
(layer, coverage))``: the input space its examples drew (see ``coverage_of``);
``("layer_gate_claims", (layer, property, counts))``: how many of its examples
made the property's claim (see ``properties.claims``); and for a failure,
``("layer_gate_replay", command)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from properties.coverage import describe_coverage, merge_coverage, sorted_coverage
from properties.errors import UNUSABLE

KEY = "layer_gate"
COVERAGE_KEY = "layer_gate_coverage"
CLAIMS_KEY = "layer_gate_claims"
REPLAY_KEY = "layer_gate_replay"
SYMBOL = {
    "passed": "pass",
    "no claim": "no claim",
    "failed": "FAIL",
    "error": "ERROR",
    "config error": "CONFIG",
    "skipped": "skip",
    "xfail": "xfail",
}


def merge_claims(into: dict[str, Any], more: dict[str, Any]) -> None:
    """Add ``more``'s example and claim counts (and no-claim reasons) to ``into``."""
    into["examples"] += more["examples"]
    into["claimed"] += more["claimed"]
    for reason, n in more["no_claim"].items():
        into["no_claim"][reason] = into["no_claim"].get(reason, 0) + n


class GateReport:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: dict[tuple[str, str], dict[str, Any]] = {}
        self.coverage: dict[str, dict[str, Any]] = {}

    # -- gathering ---------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        recorded = dict(report.user_properties)
        if COVERAGE_KEY in recorded:
            layer, coverage = recorded[COVERAGE_KEY]
            self.coverage[layer] = merge_coverage(self.coverage.get(layer), coverage)
        cell = recorded.get(KEY)
        if cell is None:
            return
        layer, prop = cell
        entry = self.results.setdefault(
            (layer, prop),
            {"outcome": "passed", "reason": "", "nodeid": report.nodeid, "examples": 0, "claimed": 0, "no_claim": {}},
        )
        if CLAIMS_KEY in recorded:
            merge_claims(entry, recorded[CLAIMS_KEY][2])
        if REPLAY_KEY in recorded:
            entry["replay"] = recorded[REPLAY_KEY]
        if hasattr(report, "wasxfail"):
            entry.update(outcome="xfail", reason=report.wasxfail or "expected to fail")
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            entry.update(outcome="skipped", reason=reason.removeprefix("Skipped: "))
        elif report.failed:
            text = report.longreprtext
            if "SpecError" in text:
                outcome = "config error"
            else:
                outcome = "failed" if report.when == "call" else "error"
            entry.update(outcome=outcome, reason=_first_line_of_failure(text))
        entry["duration"] = entry.get("duration", 0.0) + report.duration

    # -- writing -----------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results or hasattr(self.config, "workerinput"):
            return
        terminalreporter.write_sep("=", "layer gate: property x layer")
        for line in self.text_matrix():
            terminalreporter.write_line(line)
        if self.coverage:
            terminalreporter.write_sep("-", "layer gate: input space the examples covered")
            for line in self.coverage_lines():
                terminalreporter.write_line(line)
        md = self.config.getoption("report_md")
        if md:
            _write(Path(md), self.markdown())
            terminalreporter.write_line(f"layer gate report (Markdown): {md}")
        js = self.config.getoption("report_json")
        if js:
            _write(Path(js), json.dumps(self.as_json(), indent=2) + "\n")
            terminalreporter.write_line(f"layer gate report (JSON): {js}")

    def _axes(self) -> tuple[list[str], list[str]]:
        layers = sorted({layer for layer, _ in self.results})
        props = list(dict.fromkeys(prop for _, prop in sorted(self.results, key=lambda k: k[1])))
        return layers, props

    def _cell(self, layer: str, prop: str) -> str:
        entry = self.results.get((layer, prop))
        if entry is None:
            return "-"
        if entry["outcome"] == "skipped" and entry["reason"].startswith("not applicable"):
            return "n/a"
        if entry["outcome"] == "skipped" and entry["reason"].startswith(UNUSABLE):
            return "not run"
        if entry["outcome"] == "passed" and entry.get("examples") and not entry.get("claimed"):
            return "no claim"  # green means checked: every example withdrew its claim
        return SYMBOL[entry["outcome"]]

    def reason(self, layer: str, prop: str) -> str:
        """Why a cell is what it is, whole (the terminal may shorten it)."""
        entry = self.results[(layer, prop)]
        if self._cell(layer, prop) == "no claim":
            reasons = sorted(entry["no_claim"].items(), key=lambda kv: (-kv[1], kv[0]))
            listed = "; ".join(f"{why} ({n})" for why, n in reasons)
            return f"no claim on any of {entry['examples']} examples: {listed}"
        return entry["reason"]

    def _notes(self, *, shorten: int | None = None) -> list[str]:
        """Why each cell that is neither pass nor n/a is what it is, and how to replay a failure."""
        notes = []
        for (layer, prop), entry in sorted(self.results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            cell = self._cell(layer, prop)
            if cell not in ("pass", "n/a", "not run"):  # not run: the CONFIG says why
                reason = self.reason(layer, prop)
                if shorten is not None and len(reason) > shorten:
                    reason = reason[:shorten].rsplit(" ", 1)[0] + " ..."
                notes.append(f"{prop} [{layer}] {cell}: {reason}")
                if "replay" in entry:
                    notes.append(f"    replay: {entry['replay']}")
        return notes

    def rows(self) -> tuple[list[str], list[list[str]]]:
        layers, props = self._axes()
        return ["property", *layers], [[prop, *(self._cell(layer, prop) for layer in layers)] for prop in props]

    def text_matrix(self) -> list[str]:
        header, rows = self.rows()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
        lines.append(self._totals("  "))
        return lines + self._notes(shorten=TERMINAL_REASON)

    def coverage_lines(self) -> list[str]:
        return [f"{layer}: {describe_coverage(self.coverage[layer])}" for layer in sorted(self.coverage)]

    def markdown(self) -> str:
        header, rows = self.rows()
        lines = ["## Layer gate: property x layer", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(f"`{r[0]}`" if i == 0 else c for i, c in enumerate(r)) + " |" for r in rows]
        lines += ["", self._totals(" ")]
        notes = self._notes()
        if notes:
            lines += ["", *(f"  - {note.strip()}" if note.startswith(" ") else f"- {note}" for note in notes)]
        if self.coverage:
            lines += ["", "### Input space the examples covered", "", *(f"- {line}" for line in self.coverage_lines())]
        return "\n".join(lines) + "\n"

    def _totals(self, gap: str) -> str:
        """"3 pass, 1 FAIL, ..." and a legend for the cells that need one."""
        counts = self.counts()
        legend = [
            text
            for cell, text in (
                ("n/a", "n/a: the spec does not declare what the property needs"),
                ("no claim", "no claim: the property checked nothing on any example"),
                ("not run", "not run: the layer's spec is unusable, see its CONFIG"),
            )
            if counts[cell]
        ]
        totals = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        return totals + (f"{gap}({'; '.join(legend)})" if legend else "")

    def counts(self) -> dict[str, int]:
        counts = {name: 0 for name in (*SYMBOL.values(), "n/a", "not run")}
        for layer, prop in self.results:
            counts[self._cell(layer, prop)] += 1
        return counts

    def as_json(self) -> dict[str, Any]:
        layers, props = self._axes()
        return {
            "layers": layers,
            "properties": props,
            "results": [
                {"layer": layer, "property": prop, **entry, "reason": self.reason(layer, prop), "cell": self._cell(layer, prop)}
                for (layer, prop), entry in sorted(self.results.items())
            ],
            "coverage": {layer: sorted_coverage(self.coverage[layer]) for layer in sorted(self.coverage)},
        }


# The terminal's notes shorten a reason to this many characters; the reports keep it whole.
TERMINAL_REASON = 300


def _first_line_of_failure(text: str) -> str:
    for line in text.splitlines():
        if " failed on " in line or "SpecError" in line:
            return line.strip().lstrip("E|+ ").strip()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("E ") and len(stripped) > 2:
            return stripped[2:].strip()
    return text.strip().splitlines()[-1] if text.strip() else ""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
