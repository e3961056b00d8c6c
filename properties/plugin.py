"""The pytest plugin: profiles, options, and the gate (properties x layers).

Loaded through the ``pytest11`` entry point once the project is installed.
Layers registered from a ``conftest.py`` (``properties.register(spec)``) are
collected under that file as ``conftest.py::test_<property>[<layer>]``: one
test per property, parametrized over the layers, so ``-k``, markers, node
ids, ``--lf`` and xdist work as for any test.  Collection depends only on the
registries, never on randomness, so every xdist worker collects the same tests.

Importing this module imports Hypothesis but not torch: projects that
register no layers pay nothing.
"""

from __future__ import annotations

import fnmatch
import os
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from properties import database, registry
from properties.errors import SpecError
from properties.report import COVERAGE_KEY, KEY as REPORT_KEY, GateReport

# -- Hypothesis profiles -------------------------------------------------------
# dev: fast feedback while editing.  ci: deterministic (the same examples on
# every run and every machine, so a red gate is never a fluke), prints the
# @reproduce_failure blob.  nightly: many more examples, random.  The
# too_slow health check is off where examples are many or fixed: it measures
# generation time, and a busy shared runner, not our strategies, trips it.
# Deadlines are off: a gate must not fail because a shared 2-core machine
# was busy (or compiled something); speed is measured in benchmarks/.
# Each profile starts from Hypothesis' own defaults: under $CI Hypothesis has
# already loaded its derandomized "ci" profile, which a profile registered
# without a parent would silently inherit.
_BASE = settings.get_profile("default")
# Enough examples per test that the gate's work outweighs each xdist
# worker's start-up (importing torch, ~3 s): -n auto then pays off.
CI_EXAMPLES = 100
settings.register_profile("dev", _BASE, max_examples=25, deadline=None, print_blob=True)
settings.register_profile(
    "ci",
    _BASE,
    max_examples=CI_EXAMPLES,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("nightly", _BASE, max_examples=500, deadline=None, print_blob=True)
# soak: the ci example count, but random (seeded with --hypothesis-seed) and
# without the example database, for `python -m properties.soak`.
settings.register_profile(
    "soak",
    _BASE,
    max_examples=CI_EXAMPLES,
    deadline=None,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE_ENV = "HYPOTHESIS_PROFILE"


def default_profile() -> str:
    """``$HYPOTHESIS_PROFILE``, else ``ci`` on CI services (they set ``CI``), else ``dev``."""
    if os.environ.get(PROFILE_ENV):
        return os.environ[PROFILE_ENV]
    return "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("layer-properties", "property-based layer gate (properties x registered layers)")
    group.addoption(
        "--layers",
        metavar="NAMES",
        help="comma-separated layer names or globs to run (default: all registered)",
    )
    group.addoption(
        "--properties",
        metavar="NAMES",
        help="comma-separated property names or globs to run (default: the whole catalogue)",
    )
    group.addoption(
        "--dtypes",
        metavar="NAMES",
        help="comma-separated dtypes to draw: float32,float64,float16,bfloat16 (default: all)",
    )
    group.addoption(
        "--devices",
        metavar="NAMES",
        help="comma-separated devices to draw: cpu,cuda,mps (default: all present)",
    )
    group.addoption("--report-md", metavar="PATH", help="write the property x layer matrix as Markdown (CI job summary)")
    group.addoption("--report-json", metavar="PATH", help="write the property x layer results as JSON")
    database.add_options(group)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # After Hypothesis' own plugin: --hypothesis-profile wins, then the
    # environment (see default_profile).
    if not config.getoption("hypothesis_profile", None):
        name = default_profile()
        try:
            settings.load_profile(name)
        except Exception:
            raise pytest.UsageError(
                f"Hypothesis profile {name!r} (from ${PROFILE_ENV} or $CI) is not registered; use dev, ci or nightly."
            ) from None
    config._layer_gate_selection = _Selection.from_options(config)  # type: ignore[attr-defined]
    database.configure(config)
    config.pluginmanager.register(GateReport(config), "layer-gate-report")


class _Selection:
    """What the command line selected; validated once, with errors that say what to change."""

    def __init__(self, layers: list[str] | None, properties: list[str] | None, dtypes: Any, devices: Any):
        self.layers, self.properties, self.dtypes, self.devices = layers, properties, dtypes, devices

    @classmethod
    def from_options(cls, config: pytest.Config) -> _Selection:
        def split(option: str) -> list[str] | None:
            value = config.getoption(option)
            return None if value is None else [v.strip() for v in value.split(",") if v.strip()]

        dtypes, devices = split("dtypes"), split("devices")
        known_dtypes = ("float32", "float64", "float16", "bfloat16")
        known_devices = ("cpu", "cuda", "mps")
        for option, values, known in (("--dtypes", dtypes, known_dtypes), ("--devices", devices, known_devices)):
            unknown = [v for v in values or () if v not in known]
            if unknown or values == []:
                raise pytest.UsageError(f"{option}: unknown {unknown or 'empty value'}; choose from {', '.join(known)}.")
        return cls(split("layers"), split("properties"), dtypes, devices)

    @staticmethod
    def matches(name: str, patterns: list[str] | None) -> bool:
        return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)

    def check_known(self, option: str, patterns: list[str] | None, names: list[str]) -> None:
        for pattern in patterns or ():
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise pytest.UsageError(f"{option}: {pattern!r} matches nothing; known: {', '.join(names)}.")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # After collection every conftest, and so every layer, is known.
    _check_selection_names(config)
    for item in items:
        prop = getattr(getattr(item, "function", None), "_layer_property", None)
        if prop is not None:
            item.user_properties.append((REPORT_KEY, (item.callspec.params["layer"].name, prop)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    prop = getattr(getattr(item, "function", None), "_layer_property", None)
    if prop and report.when == "call":
        from properties.runner import take_coverage  # a gate test ran: the framework is imported

        layer = item.callspec.params["layer"].name
        coverage = take_coverage(layer, prop)
        if coverage is not None:  # carried to the controller under xdist, like the layer_gate entry
            report.user_properties.append((COVERAGE_KEY, (layer, coverage)))
        if report.failed:
            report.sections.append(("layer gate: replay", replay_instructions(item)))
    return report


def replay_instructions(item: pytest.Item) -> str:
    """How to rerun exactly this failure."""
    options = []
    from properties.runner import profile_name

    profile = profile_name()
    if profile not in ("default", "dev"):
        options.append(f"--hypothesis-profile={profile}")
    seed = item.config.getoption("hypothesis_seed", None)
    if seed is not None:
        options.append(f"--hypothesis-seed={seed}")
    command = " ".join(["pytest", repr(item.nodeid).replace("'", '"'), *options])
    return (
        f"rerun this test alone:  {command}\n"
        "Hypothesis replays the shrunk example from its example database (.hypothesis/); "
        "with print_blob on (every profile here) the failure above also shows a "
        "@reproduce_failure(...) decorator that replays it anywhere."
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    # An xdist controller collects nothing and workers' usage errors are not
    # shown, so the controller checks the names its conftests registered.
    is_controller = session.config.getoption("dist", "no") != "no" and not hasattr(session.config, "workerinput")
    if is_controller:
        _check_selection_names(session.config)


def _check_selection_names(config: pytest.Config) -> None:
    selection: _Selection = config._layer_gate_selection  # type: ignore[attr-defined]
    # Names are looked up only when asked for: that imports the layers.
    if registry.anchors() and selection.layers is not None:
        selection.check_known("--layers", selection.layers, [s.name for s in registry.registered_layers()])
    if registry.anchors() and selection.properties is not None:
        selection.check_known("--properties", selection.properties, [p.name for p in registry.registered_properties()])


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == "conftest.py" and file_path.resolve() in registry.anchors():
        return LayerGate.from_parent(parent, path=file_path)
    return None


class LayerGate(pytest.Module):
    """The tests of one conftest's registered layers: one function per property."""

    def _getobj(self) -> types.ModuleType:
        from properties import runner

        _configure_torch_for_worker()
        selection: _Selection = self.config._layer_gate_selection  # type: ignore[attr-defined]
        runner.select(
            dtypes=None if selection.dtypes is None else [_dtype(d) for d in selection.dtypes],
            devices=selection.devices,
        )
        try:
            specs = registry.registered_layers(self.path.resolve())
        except SpecError as error:
            raise self.CollectError(str(error)) from None
        props = registry.registered_properties()
        specs = [s for s in specs if selection.matches(s.name, selection.layers)]
        module = types.ModuleType(f"layer_gate[{self.path}]")
        module.__file__ = str(self.path)
        for prop in props:
            if not selection.matches(prop.name, selection.properties) or not specs:
                continue
            self.config.addinivalue_line("markers", f"{prop.family}: property family {prop.family}")
            params = []
            for spec in specs:
                reason = runner.why_not_run(prop, spec)
                marks = [pytest.mark.skip(reason=reason)] if reason else []
                params.append(pytest.param(spec, id=spec.name, marks=marks))

            test = _property_test(prop, params)
            setattr(module, f"test_{prop.name}", test)
        return module


def _property_test(prop: Any, params: list[Any]) -> Any:
    """``test_<property>(layer)``: a Hypothesis test parametrized over the layers."""
    from properties.runner import property_test, scaled_settings

    test = property_test(prop, settings=scaled_settings(prop) if prop.examples_scale != 1.0 else None)
    test._layer_property = prop.name  # type: ignore[attr-defined]  (read by the report)
    test = pytest.mark.parametrize("layer", params)(test)
    return getattr(pytest.mark, prop.family)(test)


def _dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


_torch_configured = False


def _configure_torch_for_worker() -> None:
    """Split the cores between xdist workers: n workers x (cores / n) threads.

    Without this each of two workers on two cores runs two intra-op threads,
    and the four threads fight over two cores.
    """
    global _torch_configured
    if _torch_configured:
        return
    _torch_configured = True
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
