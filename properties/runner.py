"""Running one property on one layer: draw an example, call the check.

Shared by the pytest plugin (one test per property x layer) and by
``check_layer`` for programmatic use and the framework's self-tests.  This is
the module that runs properties, so it imports the built-in catalogue (which
registers them); ``registered_properties`` from here lists it and whatever
else has been registered.  ``spec_call`` and ``profile_name`` are re-exported
from ``properties.spec`` and ``properties.profiles``.  What a run selected
(``properties.selection.Selection``) is passed to each function that draws
or decides what runs; by default everything.
"""

from __future__ import annotations

import dataclasses
import sys
import unittest
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch
from hypothesis import HealthCheck, Phase, find, given, settings as Settings, strategies as st
from hypothesis.errors import NoSuchExample

import properties.catalogue  # noqa: F401  (importing it registers the built-in properties)
from properties import claims
from properties.cases import LayerCase, seeded
from properties.catalogue._common import computed_in_lower_precision
from properties.coverage import coverage_of, merge_coverage
from properties.errors import SpecError, field_error
from properties.names import dtype_name
from properties.profiles import profile_name
from properties.registry import LayerProperty, registered_properties
from properties.selection import EVERYTHING, Selection, available_devices, run_pairs
from properties.spec import ExpectedFailure, LayerSpec, spec_call
from properties.strategies import layer_cases
from properties.tolerances import ToleranceExceeded

__all__ = [
    "ExpectedFailureRun",
    "GlobalState",
    "check_layer",
    "check_property_once",
    "profile_name",
    "property_test",
    "registered_properties",
    "scaled_settings",
    "spec_call",
    "spec_problem",
    "take_claims",
    "take_coverage",
    "why_not_run",
]

# The property that checks the spec itself (see spec_problem).
SPEC_CHECK = "spec_is_usable"

@dataclasses.dataclass(frozen=True)
class ExpectedFailureRun:
    """A property's run on the dtypes and devices where ``spec`` declares it fails.

    The plugin collects it as its own test, ``test_<property>[<layer>-xfail]``,
    marked ``xfail(strict=True)``: reported as xfail when Hypothesis finds
    the failure, failing when every example passes.
    """

    spec: LayerSpec
    expected: ExpectedFailure

    @property
    def name(self) -> str:
        return self.spec.name


def cases_for(
    prop: LayerProperty, spec: LayerSpec, expected: ExpectedFailure | None = None, *, selection: Selection = EVERYTHING
) -> st.SearchStrategy[LayerCase]:
    """The examples ``prop`` runs on ``spec``, within what the run selected."""
    return layer_cases(spec, pairs=run_pairs(prop, spec, selection, expected), values=prop.values)


def why_not_run(
    prop: LayerProperty, spec: LayerSpec, expected: ExpectedFailure | None = None, *, selection: Selection = EVERYTHING
) -> str | None:
    """Why ``prop`` cannot run on ``spec`` in a run that selected ``selection`` (reported as
    the skip reason), or None.

    With ``expected``: why that expected failure's test cannot run here.
    """
    reason = prop.not_applicable_because(spec)
    if reason:
        return f"not applicable: {reason}"
    pairs = run_pairs(prop, spec, selection, expected)
    if not pairs.dtypes:
        return (
            f"not run: {spec.name} (field 'dtypes') supports {_names(spec.dtypes)}; "
            f"{prop.name} needs {_names(prop.dtypes or spec.dtypes)}, the run selected {_names(selection.dtypes)}"
        )
    if not pairs.devices:
        return (
            f"not run: {spec.name} (field 'devices') supports {list(spec.devices)}; this machine has "
            f"{list(available_devices())}, the run selected {list(selection.devices or ['all'])}"
        )
    if pairs.only == () and expected is None:
        return f"not run: every dtype and device {prop.name} draws here is a declared expected failure of {spec.name}"
    if pairs.only == ():
        return f"not run: {expected} (none of those dtypes and devices is drawn here)"
    return None


def check_expected_failures(spec: LayerSpec, known: Sequence[str]) -> None:
    """Every expected failure ``spec`` declares names a registered property."""
    unknown = sorted({e.property for e in spec.expected_failures} - set(known))
    if unknown:
        raise field_error(
            spec.name,
            "expected_failures",
            f"names {unknown}, which are not properties (known: {', '.join(sorted(known))})",
            colon=False,
        )


def _names(dtypes: Sequence[Any] | None) -> str:
    """Dtypes (or their names) as a message lists them."""
    return "all dtypes" if dtypes is None else ", ".join(dtype_name(d) for d in dtypes)


# Examples spec_problem checks: the simplest can hide a fault (a reference of the wrong output
# shape agrees where in_units == units; MyLinear's third example shows it).  The gallery's and
# the zoo's 93 specs: 6.4 s, against 2.8 s for the simplest example alone (this 2-core machine).
_EXAMPLES = 5


def spec_problem(spec: LayerSpec, *, selection: Selection = EVERYTHING) -> SpecError | None:
    """The SpecError ``spec_is_usable`` raises on the spec's simplest example or on a few
    more, shrunk to the simplest that shows it; or None.

    Cheap (a few examples, found without running the catalogue): the plugin calls
    it once per layer at collection.  Derandomized, so that every xdist worker finds
    the same; Hypothesis generates the simplest example first.  Other exceptions are
    not the spec's problem; the properties report them.
    """
    prop = next(p for p in registered_properties() if p.name == SPEC_CHECK)
    if why_not_run(prop, spec, selection=selection):
        return None
    settings = Settings(
        database=None, max_examples=_EXAMPLES, derandomize=True, phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    before = GlobalState.capture()
    try:
        found = find(cases_for(prop, spec, selection=selection), lambda case: _spec_error(prop, case) is not None, settings=settings)
        return _spec_error(prop, found)
    except NoSuchExample:
        return None
    except SpecError as error:  # drawing the example itself (a domain without valid inputs)
        return error
    except Exception:
        return None
    finally:
        before.restore_and_diff()


def _spec_error(prop: LayerProperty, case: LayerCase) -> SpecError | None:
    """The SpecError ``prop`` (spec_is_usable) raises on ``case``, or None."""
    try:
        with seeded(case.module_seed + 2):
            prop.check(case)
    except SpecError as error:
        return error
    except Exception:
        return None
    return None


def check_property_once(
    prop: LayerProperty, spec: LayerSpec | ExpectedFailureRun, data: st.DataObject, *, selection: Selection = EVERYTHING
) -> None:
    """Draw one example of ``spec`` for ``prop`` and check it, isolating torch's global state.

    A failure's message starts with the property and the layer.  Whatever the
    check or the layer does, torch's global state (default dtype, grad mode,
    RNG state, deterministic-algorithms flag, thread count, anomaly mode) is
    the same afterwards; a layer that changed any but the RNG state fails the
    property (RNG use is legitimate, and the RNG is seeded per example).
    """
    __tracebackhide__ = True
    unavailable = _platform_unavailable(prop)
    if unavailable:
        _skip(f"cannot run here: {unavailable}")
    expected = None
    if isinstance(spec, ExpectedFailureRun):  # only the dtypes and devices it declares
        spec, expected = spec.spec, spec.expected
    case = data.draw(cases_for(prop, spec, expected, selection=selection), label="example")
    _record_coverage(prop, spec, case)
    extra = None if prop.extra is None else data.draw(prop.extra, label="extra")
    before = GlobalState.capture()
    try:
        # Seeded: whatever the check itself draws (gradcheck's random
        # projections, an equivalent's initialization) replays exactly, and
        # the global RNG state is restored afterwards.
        with seeded(case.module_seed + 2), claims.example_ledger() as ledger:
            try:
                prop.check(case) if prop.extra is None else prop.check(case, extra)
            finally:
                _record_claim(prop, spec, ledger)
    except AssertionError as failure:
        changed = before.restore_and_diff()
        lower = ""
        if isinstance(failure, ToleranceExceeded):
            lower = _computed_in_lower_precision(case)
            before.restore_and_diff()  # the probe ran the layer again
        text = str(failure).removeprefix(f"{spec.name}: ")
        if lower:
            first, _, rest = text.partition("\n")  # after the finding, before a replay program
            text = f"{first} -- the layer {lower}" + (f"\n{rest}" if rest else "")
        if changed:
            text += f" (forward also changed torch's global state: {changed}; restored)"
        failure.args = (f"{prop.name} failed on {spec.name}: {text}", *failure.args[1:])
        raise
    except BaseException:
        before.restore_and_diff()
        raise
    changed = before.restore_and_diff()
    if changed:
        raise AssertionError(
            f"{prop.name} failed on {spec.name}: running it changed torch's global state ({changed}); "
            "a layer must not change process-wide settings (restored, so other tests are unaffected)"
        )


def _computed_in_lower_precision(case: LayerCase) -> str:
    """Why a layer misses its bound where it narrows its dtype inside forward (a float64
    layer computing in float32 misses float64's bound by float32's rounding); else ""."""
    try:
        module, x = case.build(), case.make_input()
    except Exception:
        return ""
    return computed_in_lower_precision(case.run, module, x, dtype=case.dtype)


# The input space each (layer, property) drew in this process, until the
# pytest plugin takes it into the test's report (see properties.coverage).
_coverage: dict[tuple[str, str], dict[str, Any]] = {}


def _record_coverage(prop: LayerProperty, spec: LayerSpec, case: LayerCase) -> None:
    recipe = case.input_recipe
    regime = getattr(recipe, "regime", "indices")  # an IndexRecipe (integer or bool input) has no value regime
    drawn = coverage_of(recipe.shape, dtype_name(recipe.dtype), recipe.device, regime)
    _coverage[(spec.name, prop.name)] = merge_coverage(_coverage.get((spec.name, prop.name)), drawn)


def take_coverage(layer: str, prop: str) -> dict[str, Any] | None:
    """The input space that ``prop`` drew on ``layer`` since the last call (None if nothing)."""
    return _coverage.pop((layer, prop), None)


# Per (layer, property): the examples checked, those on which the property made
# its claim, and why the others made none (see properties.claims).
_claims: dict[tuple[str, str], dict[str, Any]] = {}


def _record_claim(prop: LayerProperty, spec: LayerSpec, ledger: claims.Ledger) -> None:
    counts = _claims.setdefault((spec.name, prop.name), {"examples": 0, "claimed": 0, "no_claim": {}})
    counts["examples"] += 1
    reason = ledger.no_claim_reason
    if reason is None:
        counts["claimed"] += 1
    else:
        counts["no_claim"][reason] = counts["no_claim"].get(reason, 0) + 1


def take_claims(layer: str, prop: str) -> dict[str, Any] | None:
    """``{"examples", "claimed", "no_claim": {reason: count}}`` of ``prop`` on ``layer``
    since the last call (None if no example ran)."""
    return _claims.pop((layer, prop), None)


def _skip(reason: str) -> NoReturn:
    """Skip the running test: pytest's skip where pytest runs (the gate; check_layer called
    from a test), else unittest's SkipTest: a caller outside pytest never loads pytest."""
    pytest = sys.modules.get("pytest")
    if pytest is not None:
        pytest.skip(reason)
    raise unittest.SkipTest(reason)


_probed: dict[str, str | None] = {}


def _platform_unavailable(prop: LayerProperty) -> str | None:
    """The property's platform probe, asked once per process (the answer does not depend on examples)."""
    if prop.platform_probe is None:
        return None
    if prop.name not in _probed:
        _probed[prop.name] = prop.platform_probe()
    return _probed[prop.name]


class GlobalState:
    """A snapshot of torch's process-wide settings that a layer could disturb."""

    def __init__(self) -> None:
        self.default_dtype = torch.get_default_dtype()
        self.grad_enabled = torch.is_grad_enabled()
        self.rng_state = torch.default_generator.get_state()
        self.deterministic = torch.are_deterministic_algorithms_enabled()
        self.deterministic_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        self.threads = torch.get_num_threads()
        self.anomaly = torch.is_anomaly_enabled()
        # TF32 on CUDA changes float32 products' rounding (and their bounds).
        self.matmul_precision = torch.get_float32_matmul_precision()
        self.cudnn_tf32 = torch.backends.cudnn.allow_tf32

    capture = classmethod(lambda cls: cls())

    def restore_and_diff(self) -> str:
        """Put back every setting that changed; describe those.

        Only changed settings are set: setting some (deterministic
        algorithms) imports parts of torch that cost seconds on first use.
        """
        now = GlobalState()
        changed = []
        for field, label, restore in (
            ("default_dtype", "default dtype", lambda: torch.set_default_dtype(self.default_dtype)),
            ("grad_enabled", "grad mode", lambda: torch.set_grad_enabled(self.grad_enabled)),
            (
                "deterministic",
                "deterministic algorithms",
                lambda: torch.use_deterministic_algorithms(self.deterministic, warn_only=self.deterministic_warn_only),
            ),
            ("threads", "thread count", lambda: torch.set_num_threads(self.threads)),
            ("anomaly", "anomaly detection", lambda: torch.autograd.set_detect_anomaly(self.anomaly)),
            ("matmul_precision", "float32 matmul precision", lambda: torch.set_float32_matmul_precision(self.matmul_precision)),
            ("cudnn_tf32", "cuDNN TF32", lambda: setattr(torch.backends.cudnn, "allow_tf32", self.cudnn_tf32)),
        ):
            if getattr(now, field) != getattr(self, field):
                changed.append(f"{label} {getattr(self, field)} -> {getattr(now, field)}")
                restore()
        torch.default_generator.set_state(self.rng_state)
        return "; ".join(changed)


def check_layer(
    spec: LayerSpec,
    properties: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
) -> dict[str, dict[str, Any]]:
    """Run properties (all that apply, by default) on ``spec`` outside pytest.

    Raises the first failure, after Hypothesis has shrunk it.  A declared
    expected failure must fail (on its dtypes and devices); one that passes
    raises (strict XPASS).  Returns, per property that ran, the examples it
    checked and on how many it made its claim (``take_claims``): one with
    ``claimed == 0`` checked nothing, which the gate reports as ``no claim``.
    """
    __tracebackhide__ = True
    chosen = [p for p in registered_properties() if properties is None or p.name in properties]
    if properties is not None:
        unknown = sorted(set(properties) - {p.name for p in chosen})
        if unknown:
            raise SpecError(f"unknown properties {unknown}; known: {[p.name for p in registered_properties()]}")
    check_expected_failures(spec, [p.name for p in registered_properties()])
    counts = {}
    for prop in chosen:
        test = property_test(prop, settings=scaled_settings(prop, settings))
        if not why_not_run(prop, spec):
            # One example-database key per (property, layer), not one for all.
            test.hypothesis.inner_test._hypothesis_internal_add_digest = f"{prop.name}[{spec.name}]".encode()
            test(layer=spec)
            counts[prop.name] = take_claims(spec.name, prop.name)
        for expected in spec.expected_failures_of(prop.name):
            if why_not_run(prop, spec, expected):
                continue
            test.hypothesis.inner_test._hypothesis_internal_add_digest = f"{prop.name}[{spec.name}-xfail]".encode()
            try:
                test(layer=ExpectedFailureRun(spec, expected))
            except (SpecError, unittest.SkipTest):
                raise
            except Exception:
                continue  # failed as declared: xfail
            raise AssertionError(
                f"{prop.name} on {spec.name}: XPASS (strict): declared '{expected}', but every example passed. "
                "Remove the expected failure (or narrow its dtypes/devices)."
            )
        take_claims(spec.name, prop.name)  # the expected failures' examples: nothing left for a later run
    return counts


def scaled_settings(prop: LayerProperty, base: Settings | None = None) -> Settings:
    """``base`` (default: the loaded profile) with the property's example count applied."""
    base = Settings.default if base is None else base
    if prop.examples_scale == 1.0:
        return base
    return Settings(base, max_examples=max(2, int(base.max_examples * prop.examples_scale)))


def property_test(
    prop: LayerProperty, *, settings: Settings | None = None, selection: Selection = EVERYTHING
) -> Callable[..., None]:
    """``test_<property>(layer)``: a Hypothesis test of ``prop`` on the layer it is given.

    The pytest plugin parametrizes it over the registered layers; ``check_layer``
    calls it on one spec.  ``settings`` (when given) is applied to it; its examples
    stay within ``selection``.
    """
    check_property_once = _checking(selection)

    # The body's source (and signature) is part of what seeds derandomized runs
    # (Hypothesis' function digest), so it stays as it is: the selection comes in
    # through the name it calls.  An expected-failure run is unwrapped in check_property_once.
    def test(layer: LayerSpec, data: st.DataObject) -> None:
        __tracebackhide__ = True
        check_property_once(prop, layer, data)

    # Named before @given wraps it, so Hypothesis' reports use the name too.
    test.__name__ = test.__qualname__ = f"test_{prop.name}"
    test.__doc__ = prop.description
    test = given(data=st.data())(test)
    return test if settings is None else settings(test)


def _checking(selection: Selection) -> Callable[..., None]:
    """``check_property_once`` within ``selection``, looked up when called (benchmarks/gate.py
    counts the examples that reach it by replacing it)."""

    def check(prop: LayerProperty, layer: LayerSpec | ExpectedFailureRun, data: st.DataObject) -> None:
        __tracebackhide__ = True
        globals()["check_property_once"](prop, layer, data, selection=selection)

    return check
