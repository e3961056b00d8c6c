"""The property x layer report (properties.report), fed reports as the plugin
makes them: cells, no-claim cells, whole reasons, replay commands, sorted coverage."""

import json
from types import SimpleNamespace

from properties.coverage import coverage_of, merge_coverage
from properties.report import CLAIMS_KEY, COVERAGE_KEY, KEY, REPLAY_KEY, GateReport

LONG = "matches_reference failed on L: " + " ".join(f"word{i}" for i in range(120))


def _report(layer, prop, *, outcome="passed", claims=None, replay=None, text="", coverage=None):
    recorded = [(KEY, (layer, prop))]
    if claims is not None:
        recorded.append((CLAIMS_KEY, (layer, prop, claims)))
    if replay is not None:
        recorded.append((REPLAY_KEY, replay))
    if coverage is not None:
        recorded.append((COVERAGE_KEY, (layer, coverage)))
    return SimpleNamespace(
        user_properties=recorded, nodeid=f"conftest.py::test_{prop}[{layer}]", when="call", duration=0.1,
        skipped=outcome == "skipped", failed=outcome == "failed", longreprtext=text, longrepr=None,
    )


def _gate() -> GateReport:
    gate = GateReport(SimpleNamespace())
    coverage = merge_coverage(coverage_of((2, 3, 4, 5), "float16", "cpu", "huge"), coverage_of((7,), "float32", "cpu", "zeros"))
    gate.pytest_runtest_logreport(
        _report("L", "checked", claims={"examples": 5, "claimed": 3, "no_claim": {"empty": 2}}, coverage=coverage)
    )
    gate.pytest_runtest_logreport(
        _report("L", "never", claims={"examples": 4, "claimed": 0, "no_claim": {"empty": 3, "overflow": 1}})
    )
    gate.pytest_runtest_logreport(
        _report("L", "matches_reference", outcome="failed", text=f"E   AssertionError: {LONG}",
                claims={"examples": 1, "claimed": 1, "no_claim": {}}, replay='pytest "x" --replay=AAA')
    )
    return gate


def test_a_cell_without_a_claim_is_no_claim_with_its_reasons_most_frequent_first():
    gate = _gate()
    assert gate._cell("L", "checked") == "pass"
    assert gate._cell("L", "never") == "no claim"
    assert gate.reason("L", "never") == "no claim on any of 4 examples: empty (3); overflow (1)"
    assert gate.counts()["no claim"] == 1 and gate.counts()["pass"] == 1


def test_reports_keep_reasons_whole_and_carry_replay_commands_the_terminal_shortens():
    gate = _gate()
    failed = next(r for r in gate.as_json()["results"] if r["property"] == "matches_reference")
    assert failed["reason"].endswith(LONG) and failed["replay"] == 'pytest "x" --replay=AAA'
    assert LONG in gate.markdown() and '  - replay: pytest "x" --replay=AAA' in gate.markdown()
    terminal = "\n".join(gate.text_matrix())
    assert LONG not in terminal and LONG[:200] in terminal and 'replay: pytest "x" --replay=AAA' in terminal


def test_json_carries_the_counts_and_sorted_coverage():
    data = json.loads(json.dumps(_gate().as_json()))
    never = next(r for r in data["results"] if r["property"] == "never")
    assert (never["examples"], never["claimed"], never["cell"]) == (4, 0, "no claim")
    coverage = data["coverage"]["L"]
    assert coverage["ranks"] == [1, 4] and coverage["dtypes"] == ["float32", "float16"]
    assert coverage["regimes"] == ["zeros", "huge"]
