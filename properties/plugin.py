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
import gc
import inspect
import os
import re
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ReprEntry, ReprExceptionInfo, ReprFileLocation, ReprTraceback
from _pytest.config import ConftestImportFailure
from hypothesis import HealthCheck, settings
from hypothesis.core import decode_failure
from hypothesis.errors import DidNotReproduce

from properties import database, registry
from properties.errors import UNUSABLE, SpecError
from properties.names import DEVICE_NAMES, DTYPE_NAMES
from properties.profiles import profile_name
from properties.report import CLAIMS_KEY, COVERAGE_KEY, KEY as REPORT_KEY, REPLAY_KEY, GateReport
from properties.selection import Selection

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

# torch warns "Failed to initialize NumPy" on import when numpy is missing.
# torch works without it and the gate never converts to numpy arrays, so the
# warning is noise in a plain `pip install -e ".[test]"` (numpy is optional).
# pytest resets warning filters around each phase: this one is applied while
# conftests load (pytest_load_initial_conftests) and added to the ini
# filters for collection and tests (pytest_configure).
NUMPY_WARNING = ("ignore", "Failed to initialize NumPy", "UserWarning")


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
        help=f"comma-separated dtypes to draw: {','.join(DTYPE_NAMES)} (default: all)",
    )
    group.addoption(
        "--devices",
        metavar="NAMES",
        help=f"comma-separated devices to draw: {','.join(DEVICE_NAMES)} (default: all present)",
    )
    group.addoption(
        "--replay",
        metavar="BLOB",
        help="replay one failing example of one gate test: the blob its failure printed (give the test's node id)",
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
    config.addinivalue_line("filterwarnings", ":".join(NUMPY_WARNING))
    # pytest-xdist declares it too; without xdist the mark is inert but must be known.
    config.addinivalue_line("markers", "xdist_group(name): run under --dist loadgroup on one worker")
    config.stash[SELECTION] = _Selection.from_options(config)
    _hide_gpus_unless_selected(config.stash[SELECTION])
    blob = config.getoption("replay")
    if blob is not None:
        try:
            decode_failure(blob.encode())
        except Exception:
            raise pytest.UsageError(
                f"--replay={blob}: not a blob Hypothesis printed; copy the --replay=... of the failure's replay line."
            ) from None
    database.configure(config)
    config.pluginmanager.register(GateReport(config), "layer-gate-report")


def _hide_gpus_unless_selected(selection: _Selection) -> None:
    """``--devices`` without ``cuda``: hide the GPUs from this run and its xdist workers
    (they inherit the environment), so that nothing initializes CUDA.  torch.compile
    otherwise does, to save the CUDA RNG state: seconds per worker on a GPU machine."""
    if selection.devices is not None and "cuda" not in selection.devices and "torch" not in sys.modules:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


class _Selection(Selection):
    """What the command line selected; validated once, with errors that say what to change."""

    @classmethod
    def from_options(cls, config: pytest.Config) -> _Selection:
        def split(option: str) -> list[str] | None:
            value = config.getoption(option)
            return None if value is None else [v.strip() for v in value.split(",") if v.strip()]

        dtypes, devices = split("dtypes"), split("devices")
        for option, values, known in (("--dtypes", dtypes, DTYPE_NAMES), ("--devices", devices, DEVICE_NAMES)):
            unknown = [v for v in values or () if v not in known]
            if unknown or values == []:
                raise pytest.UsageError(f"{option}: unknown {unknown or 'empty value'}; choose from {', '.join(known)}.")
        return cls(split("layers"), split("properties"), dtypes, devices)

    def check_known(self, option: str, patterns: tuple[str, ...] | None, names: list[str]) -> None:
        for pattern in patterns or ():
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise pytest.UsageError(f"{option}: {pattern!r} matches nothing; known: {', '.join(names)}.")


# What the command line selected, kept on the config (validated once in pytest_configure).
SELECTION = pytest.StashKey["_Selection"]()


def _gate_property(item: pytest.Item) -> str | None:
    """The property a gate test checks; None for any other test."""
    return getattr(getattr(item, "function", None), "_layer_property", None)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> Any:
    # A SpecError while a conftest registers its layers is the user's spec,
    # not an import problem: show its message alone.
    action, message, _ = NUMPY_WARNING
    warnings.filterwarnings(action, message=message, category=UserWarning)
    try:
        return (yield)
    except ConftestImportFailure as failure:
        if isinstance(failure.cause, SpecError):
            raise pytest.UsageError(f"{failure.path}: {failure.cause}") from None
        raise


def pytest_exception_interact(node: Any, call: pytest.CallInfo[Any], report: Any) -> None:
    # The same for a conftest imported during collection (one in a subdirectory).
    error = call.excinfo.value if call.excinfo else None
    if isinstance(error, ConftestImportFailure) and isinstance(error.cause, SpecError):
        report.longrepr = f"{error.path}: {error.cause}"


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: the reorder sees what runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # After collection every conftest, and so every layer, is known.
    _check_selection_names(config)
    _check_something_runs(config)
    gate_items, gate_slots = [], []
    for index, item in enumerate(items):
        prop = _gate_property(item)
        if prop is not None:
            item.user_properties.append((REPORT_KEY, (item.callspec.params["layer"].name, prop)))
            gate_items.append(item)
            gate_slots.append(index)
    if hasattr(config, "workerinput"):
        # Every worker collects, and must collect the same order: reorder there only.
        for index, item in zip(gate_slots, expensive_beside_cheap(gate_items)):
            items[index] = item
    blob = config.getoption("replay")
    if blob is not None:
        if len(gate_items) != 1:
            raise pytest.UsageError(
                f"--replay replays one gate test, and {len(gate_items)} are selected: give the failing test's node id, "
                'as its replay line does: pytest "conftest.py::test_<property>[<layer>]" --replay=BLOB'
            )
        from hypothesis import __version__, reproduce_failure

        # The test function is shared by the layers of one property; only this one runs.
        reproduce_failure(__version__, blob.encode())(gate_items[0].obj)


def expensive_beside_cheap(items: list[Any]) -> list[Any]:
    """The first half interleaved with the second: a0, b0, a1, b1, ...

    pytest-xdist's ``load`` scheduler hands each worker consecutive tests (two
    each at first with 16 workers) and keeps two queued per worker.  The
    catalogue collects its expensive families first, so two expensive tests
    side by side would start on one worker and end the run late; interleaved,
    each worker starts with one expensive test and one cheap one.
    """
    half = (len(items) + 1) // 2
    first, second = items[:half], items[half:]
    return [item for pair in zip(first, second) for item in pair] + first[len(second):]


_REPRODUCE_NOTE = re.compile(r"@reproduce_failure\('[^']*', b'([^']*)'\)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    # Hypothesis advises adding @reproduce_failure(...) to the test function,
    # which a generated test does not have: the replay section offers the
    # --replay command instead (see replay_instructions).
    try:
        return (yield)
    except DidNotReproduce:
        if item.config.getoption("replay") is None or _gate_property(item) is None:
            raise
        # "Is my fix working?": the replayed example passes now, which is a pass.
        item.config.stash[_FIXED] = item.nodeid
        return None
    except BaseException as error:
        notes = getattr(error, "__notes__", None)
        if _gate_property(item) is not None and notes:
            for note in list(notes):
                found = _REPRODUCE_NOTE.search(note)
                if found:
                    item.stash[_BLOB] = found.group(1)
                    notes.remove(note)
        raise


_BLOB = pytest.StashKey[str]()
_FIXED = pytest.StashKey[str]()  # the node id whose --replay example no longer fails


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    fixed = config.stash.get(_FIXED, None)
    if fixed is not None:
        terminalreporter.write_line(
            f"--replay: the example no longer fails: {fixed} passes on it (run the whole gate for the rest)",
            green=True,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    prop = _gate_property(item)
    if prop is None:
        return report
    spec = item.callspec.params["layer"]
    if report.when == "call":
        from properties.runner import take_claims, take_coverage  # a gate test ran: the framework is imported

        coverage = take_coverage(spec.name, prop)
        if coverage is not None:  # carried to the controller under xdist, like the layer_gate entry
            report.user_properties.append((COVERAGE_KEY, (spec.name, coverage)))
        claimed = take_claims(spec.name, prop)
        if claimed is not None:
            report.user_properties.append((CLAIMS_KEY, (spec.name, prop, claimed)))
    if report.skipped and isinstance(report.longrepr, tuple):
        # Where the layer was registered, not where the framework generated the test.
        path, line = registry.registered_at(spec.name) or (item.path, 0)
        report.longrepr = (str(path), line + 1, report.longrepr[2])
    elif report.failed and call.excinfo is not None and isinstance(call.excinfo.value, (SpecError, AssertionError)):
        report.longrepr = _failure_at_the_layer(spec, call.excinfo.value, item.config.rootpath)
    if report.failed and report.when == "call":
        report.sections.append(("layer gate: replay", replay_instructions(item)))
        report.user_properties.append((REPLAY_KEY, replay_command(item)))
    return report


def _failure_at_the_layer(spec: Any, error: BaseException, rootpath: Path) -> ReprExceptionInfo:
    """The failure's message and Hypothesis' notes, located at the layer (a
    SpecError: where the spec was registered), not in the framework's frames."""
    if isinstance(error, SpecError):
        path, line = registry.registered_at(spec.name) or ("conftest.py", 0)
        line += 1
    else:
        path, line = _source_of(spec.module)
    if Path(path).is_absolute() and Path(path).is_relative_to(rootpath):
        path = Path(path).relative_to(rootpath)
    kind = type(error).__name__
    text = "\n".join([f"{kind}: {error}", *getattr(error, "__notes__", ())])
    lines = [f"E   {line_}" for line_ in text.splitlines()]
    location = ReprFileLocation(str(path), line, kind)
    entry = ReprEntry(lines, None, None, location, "long")
    return ReprExceptionInfo(
        reprtraceback=ReprTraceback([entry], None, "long"),
        reprcrash=ReprFileLocation(str(path), line, f"{kind}: {error}"),
    )


def _source_of(module: Any) -> tuple[str, int]:
    """The file and line of the layer's forward (else of its class or factory)."""
    target = module
    if isinstance(module, type) and "forward" in vars(module):
        target = vars(module)["forward"]
    try:
        return inspect.getsourcefile(target) or "?", inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return "?", 0


def replay_command(item: pytest.Item) -> str:
    """The command that reruns exactly this test (and this example, once its blob is known)."""
    options = []
    profile = profile_name()
    if profile not in ("default", "dev"):
        options.append(f"--hypothesis-profile={profile}")
    seed = item.config.getoption("hypothesis_seed", None)
    if seed is not None:
        options.append(f"--hypothesis-seed={seed}")
    blob = item.stash.get(_BLOB, None)
    if blob is not None:
        options.append(f"--replay={blob}")
    return " ".join(["pytest", repr(item.nodeid).replace("'", '"'), *options])


def replay_instructions(item: pytest.Item) -> str:
    """How to rerun exactly this failure."""
    if item.stash.get(_BLOB, None) is not None:
        return (
            f"replay this example:  {replay_command(item)}\n"
            "(--replay runs the shrunk example the blob encodes, on any machine with the same code and "
            "Hypothesis version; without it the test reruns from the example database, .hypothesis/)"
        )
    return (
        f"rerun this test alone:  {replay_command(item)}\n"
        "Hypothesis replays the shrunk example from its example database (.hypothesis/)."
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    # An xdist controller collects nothing and workers' usage errors are not
    # shown, so the controller checks the names its conftests registered.
    is_controller = session.config.getoption("dist", "no") != "no" and not hasattr(session.config, "workerinput")
    if is_controller:
        if session.config.getoption("replay") is not None:
            raise pytest.UsageError("--replay runs one test in one process: leave out -n/--dist.")
        _check_selection_names(session.config)
        _check_devices_present(session.config)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # Every test has run; what is still alive (torch, the collected gate) lives
    # until exit.  Frozen, it spares the two full garbage collections pytest
    # runs at exit (0.3-0.9 s each with torch loaded), in every xdist worker.
    # The young generations are collected first, so that recent garbage still
    # reports its unraisable exceptions.
    gc.collect(1)
    gc.freeze()


def _check_selection_names(config: pytest.Config) -> None:
    selection = config.stash[SELECTION]
    # Names are looked up only when asked for: that imports the layers.
    if registry.anchors() and selection.layers is not None:
        selection.check_known("--layers", selection.layers, [s.name for s in registry.registered_layers()])
    if registry.anchors() and selection.properties is not None:
        from properties import runner  # lazy, for its cost alone: torch and the catalogue

        selection.check_known("--properties", selection.properties, [p.name for p in runner.registered_properties()])


def _check_something_runs(config: pytest.Config) -> None:
    """A narrowing selection (--devices, --dtypes, --layers, --properties) under
    which no property can run on any layer is a usage error: a run that checks
    nothing must not pass."""
    selection = config.stash[SELECTION]
    given = {
        option: value
        for option, value in (
            ("--layers", selection.layers),
            ("--properties", selection.properties),
            ("--dtypes", selection.dtypes),
            ("--devices", selection.devices),
        )
        if value is not None
    }
    if not given or not registry.anchors():
        return
    from properties import runner

    specs = [s for s in registry.registered_layers() if selection.matches(s.name, selection.layers)]
    props = [p for p in runner.registered_properties() if selection.matches(p.name, selection.properties)]
    # A declared expected failure's test runs too (strict xfail): it checks something.
    reasons = [
        runner.why_not_run(prop, spec, expected, selection=selection)
        for prop in props
        for spec in specs
        for expected in (None, *spec.expected_failures_of(prop.name))
    ]
    if reasons and all(reasons):
        options = " ".join(f"{option}={','.join(value)}" for option, value in given.items())
        raise pytest.UsageError(
            f"{options}: nothing to check, every test would be skipped ({len(reasons)} of {len(reasons)}); "
            f"for example: {reasons[0]}. Change {' or '.join(given)}."
        )


def _check_devices_present(config: pytest.Config) -> None:
    """The controller's part of ``_check_something_runs``: --devices naming no
    device this machine has.  It needs torch but not the layers, which the
    controller does not import (the workers check the rest)."""
    devices = config.stash[SELECTION].devices
    # Every machine has a cpu: only a GPU-only selection needs torch to answer,
    # and importing torch here would delay every worker's start by seconds.
    if devices is None or "cpu" in devices or not registry.anchors():
        return
    from properties.selection import available_devices

    present = list(available_devices())
    if not any(d in present for d in devices):
        raise pytest.UsageError(
            f"--devices={','.join(devices)}: nothing to check, this machine has {present}. Change --devices."
        )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == "conftest.py" and file_path.resolve() in registry.anchors():
        return LayerGate.from_parent(parent, path=file_path)
    return None


class LayerGate(pytest.Module):
    """The tests of one conftest's registered layers: one function per property."""

    def _getobj(self) -> types.ModuleType:
        from properties import runner  # lazy, for its cost alone: torch and the catalogue

        _configure_torch_for_worker()
        selection = self.config.stash[SELECTION]
        try:
            specs = registry.registered_layers(self.path.resolve())
        except SpecError as error:
            raise self.CollectError(str(error)) from None
        props = [p for p in runner.registered_properties() if selection.matches(p.name, selection.properties)]
        specs = [s for s in specs if selection.matches(s.name, selection.layers)]
        try:
            for spec in specs:
                runner.check_expected_failures(spec, [p.name for p in runner.registered_properties()])
        except SpecError as error:
            raise self.CollectError(str(error)) from None
        # A spec that fails spec_is_usable on its first few examples gets that one
        # CONFIG; its other properties are not run (each would fail the same way).
        unusable = set()
        if any(p.name == runner.SPEC_CHECK for p in props):
            unusable = {s.name for s in specs if runner.spec_problem(s, selection=selection) is not None}
        module = types.ModuleType(f"layer_gate[{self.path}]")
        module.__file__ = str(self.path)
        for prop in props:
            if not specs:
                continue
            self.config.addinivalue_line("markers", f"{prop.family}: property family {prop.family}")
            params = []
            for spec in specs:
                reason = runner.why_not_run(prop, spec, selection=selection)
                if not reason and spec.name in unusable and prop.name != runner.SPEC_CHECK:
                    reason = f"{UNUSABLE} (see {runner.SPEC_CHECK}[{spec.name}])"
                marks = [pytest.mark.skip(reason=reason)] if reason else []
                params.append(pytest.param(spec, id=spec.name, marks=marks))
                if spec.name not in unusable:
                    params += _expected_failure_params(runner, prop, spec, selection)

            test = _property_test(prop, params, selection)
            setattr(module, f"test_{prop.name}", test)
        return module


def _expected_failure_params(runner: Any, prop: Any, spec: Any, selection: Selection) -> list[Any]:
    """One strict-xfail test per expected failure ``spec`` declares for ``prop``: ``<layer>-xfail``."""
    declared = spec.expected_failures_of(prop.name)
    params = []
    for i, expected in enumerate(declared):
        reason = runner.why_not_run(prop, spec, expected, selection=selection)
        mark = pytest.mark.skip(reason=reason) if reason else pytest.mark.xfail(reason=str(expected), strict=True)
        suffix = f"-xfail{i + 1}" if len(declared) > 1 else "-xfail"
        params.append(pytest.param(runner.ExpectedFailureRun(spec, expected), id=spec.name + suffix, marks=[mark]))
    return params


def _property_test(prop: Any, params: list[Any], selection: Selection) -> Any:
    """``test_<property>(layer)``: a Hypothesis test parametrized over the layers."""
    from properties.runner import property_test, scaled_settings  # lazy, for its cost alone (torch)

    test = property_test(
        prop, settings=scaled_settings(prop) if prop.examples_scale != 1.0 else None, selection=selection
    )
    test._layer_property = prop.name  # type: ignore[attr-defined]  (read by the report)
    test = pytest.mark.parametrize("layer", params)(test)
    if prop.warm_up:
        test = pytest.mark.xdist_group(prop.warm_up)(test)
    return getattr(pytest.mark, prop.family)(test)


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
