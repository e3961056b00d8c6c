"""Where layers and properties are registered.

Two axes of extension, one place each: ``register(spec)`` adds a layer, the
``@layer_property`` decorator adds a property.  Every registered property runs
on every registered layer whose spec declares the facts it ``requires``.

A layer is registered from a ``conftest.py``: the pytest plugin collects the
gate under the file that registered it, so ``pytest path/to/conftest.py``
runs exactly that project's layers.  This module imports neither torch nor
the rest of the framework, so loading the plugin costs nothing in projects
that register no layers.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from properties.domains import ALL_REGIMES, ValueDomain
from properties.errors import SpecError
from properties.names import dtype_name

__all__ = [
    "LayerProperty",
    "layer_property",
    "register",
    "registered_layers",
    "registered_properties",
    "unregister",
]

_layers: dict[str, tuple[Any, Path | None]] = {}
_pending: list[tuple[str, Path | None]] = []  # import paths not yet imported, and their conftest
_properties: dict[str, "LayerProperty"] = {}
# The line of the register() call of each layer (by name) and import path, in its conftest.
_lines: dict[str, int | None] = {}
_pending_lines: dict[str, int | None] = {}

def register(*specs: Any) -> None:
    """Register layer specs with the gate.

    Called from a ``conftest.py``.  Each argument is a ``LayerSpec`` or the
    import path of one, or of a sequence of them: ``"package.module:NAME"``.
    A path is imported only when the gate is collected, so a process that
    collects nothing (the pytest-xdist controller, ``pytest --version``)
    never imports the layers, nor torch.  Registering the same spec again
    from the same file (pytest may import a conftest twice) is harmless; a
    different spec under a taken name is an error.
    """
    anchor, line = _calling_conftest()
    for spec in specs:
        if isinstance(spec, str):
            module, _, name = spec.partition(":")
            if not (module and name and all(part.isidentifier() for part in (*module.split("."), name))):
                raise SpecError(
                    f"register({spec!r}): an import path looks like 'package.module:NAME' "
                    "(NAME: a LayerSpec, or a list or tuple of them)."
                )
            if (spec, anchor) not in _pending:
                _pending.append((spec, anchor))
                _pending_lines[spec] = line
        else:
            _register_spec(spec, anchor)
            _lines[spec.name] = line


def _register_spec(spec: Any, anchor: Path | None, source: str | None = None) -> None:
    # Imported here, not at the top, for its cost alone (no cycle: properties.spec
    # imports only errors): it imports torch, which the plugin must not.
    from properties.spec import LayerSpec

    if not isinstance(spec, LayerSpec):
        given = f"register({source!r}) found {spec!r}" if source else f"register() takes LayerSpec objects, got {spec!r}"
        raise SpecError(f"{given}. Wrap the layer in LayerSpec(...).")
    taken = _layers.get(spec.name)
    if taken is not None and not (taken[0].module is spec.module and taken[1] == anchor):
        where = f" in {taken[1]}" if taken[1] else ""
        raise SpecError(
            f"LayerSpec name {spec.name!r} is already registered{where} for {taken[0].module!r}. "
            "Give each spec a unique name."
        )
    _layers[spec.name] = (spec, anchor)


def _import_pending() -> None:
    """Import the specs registered by import path (at collection, not at registration)."""
    while _pending:
        path, anchor = _pending[0]
        module_name, _, name = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not (module_name == error.name or module_name.startswith(error.name + ".")):
                raise  # a module the layers import is missing: the traceback says which
            raise SpecError(
                f"register({path!r}): there is no module {module_name!r} on sys.path "
                f"(from {anchor or 'the caller'}). Check the spelling, or install the package."
            ) from None
        if not hasattr(module, name):
            raise SpecError(f"register({path!r}): module {module_name!r} has no attribute {name!r}.")
        value = getattr(module, name)
        del _pending[0]
        for spec in value if isinstance(value, (list, tuple)) else [value]:
            _register_spec(spec, anchor, path)
            _lines[spec.name] = _pending_lines.get(path)


def unregister(*names: str) -> None:
    """Remove layers by name (for tests that register temporary layers)."""
    for name in names:
        _layers.pop(name, None)


def registered_layers(anchor: Path | None = None) -> list[Any]:
    """The registered specs in registration order (only those from ``anchor``, if given).

    Imports the specs registered by import path.
    """
    _import_pending()
    return [spec for spec, where in _layers.values() if anchor is None or where == anchor]


def anchors() -> set[Path]:
    """The conftest files that registered layers (without importing any)."""
    return {where for _, where in (*_layers.values(), *_pending) if where is not None}


def registered_at(name: str) -> tuple[Path, int] | None:
    """The conftest and the (0-based) line that registered layer ``name``, if known."""
    anchor = _layers[name][1] if name in _layers else None
    line = _lines.get(name)
    return None if anchor is None or line is None else (anchor, line - 1)


def _calling_conftest() -> tuple[Path | None, int | None]:
    frame = sys._getframe(2)
    while frame is not None:
        filename = Path(frame.f_code.co_filename)
        if filename.name == "conftest.py":
            return filename.resolve(), frame.f_lineno
        frame = frame.f_back
    return None, None


@dataclasses.dataclass(frozen=True)
class LayerProperty:
    """A property: a check run on drawn examples of every layer it applies to.

    ``requires`` names LayerSpec fields that must be set (truthy) for the
    property to apply; ``family`` becomes a pytest marker; ``dtypes`` and
    ``values`` (a ``ValueDomain``) narrow what examples are drawn (None:
    everything the spec and the run allow), for checks such as finite
    gradients whose exact answer could legitimately overflow on huge inputs.
    ``extra`` is a
    strategy for one more value the check receives as its second argument.
    ``examples_scale`` scales the profile's example count for expensive
    checks (compilation), keeping at least 2.  ``warm_up`` names a costly
    process-wide first use the check pays (``"torch.compile"``): its tests form
    one xdist group, so that ``--dist loadgroup`` pays it on one worker only.
    ``platform_probe()`` returns why this machine cannot run the property at
    all (no compiler), or None; it is asked once per process, before any
    example is drawn, and its reason becomes the test's skip reason.
    ``float_input``: the check needs a float main input (it rescales or
    shifts it), so it does not apply to layers taking indices or masks.
    """

    name: str
    check: Callable[[Any], None]
    family: str
    requires: tuple[str, ...] = ()
    dtypes: tuple[Any, ...] | None = None
    values: Any = None  # properties.strategies.ValueDomain
    extra: Any = None
    examples_scale: float = 1.0
    warm_up: str | None = None
    description: str = ""
    platform_probe: Callable[[], str | None] | None = None
    float_input: bool = False

    def not_applicable_because(self, spec: Any) -> str | None:
        """Why this property does not apply to ``spec`` (a fact it needs is not declared,
        or it needs a float input and the layer takes indices or masks), or None.

        Dtypes and devices are the run's business: see ``runner.why_not_run``.
        """
        missing = [field for field in self.requires if not getattr(spec, field)]
        if missing:
            return f"{spec.name} does not declare {', '.join(missing)}"
        if self.float_input and spec.input_dtype is not None:
            return f"{spec.name} takes {dtype_name(spec.input_dtype)} inputs; {self.name} needs a float input"
        return None


def layer_property(
    *,
    family: str | None = None,
    requires: Iterable[str] = (),
    dtypes: Iterable[Any] | None = None,
    regimes: Iterable[str] = ALL_REGIMES,
    max_splices: int = 3,
    limit: float | str | None = None,
    sparse: bool = True,
    extra: Any = None,
    examples_scale: float = 1.0,
    float_input: bool = False,
    warm_up: str | None = None,
    platform_probe: Callable[[], str | None] | None = None,
) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register ``check(case)`` (``check(case, extra)`` with ``extra=``) as a property.

    Its docstring's first paragraph, on one line, is its description (the
    docs' property table shows it).  ``regimes``,
    ``max_splices``, ``limit`` and ``sparse`` make its ``ValueDomain``.
    ``family`` (the pytest marker, ``-m <family>``) defaults to the last part
    of the check's module name: ``properties.catalogue.algebra`` gives
    ``algebra``, a check in your own ``myproj/props.py`` gives ``props``.
    """
    requires = tuple(requires)
    try:
        values = ValueDomain(tuple(regimes), max_splices, limit, sparse)
    except Exception as error:
        raise SpecError(f"layer_property: {error}") from None
    if family is not None and not family.isidentifier():
        raise SpecError(f"layer_property family {family!r} must be usable as a marker name (an identifier).")

    def decorate(check: Callable[[Any], None]) -> Callable[[Any], None]:
        name = check.__name__
        marker = family if family is not None else (check.__module__ or "").rpartition(".")[2]
        if not marker.isidentifier():
            raise SpecError(
                f"property {name!r}: its default family, the last part of its module's name ({marker!r}), "
                "is not usable as a marker name (an identifier); pass family='...' to layer_property."
            )
        from properties.spec import LayerSpec  # for its cost alone (torch), as in _register_spec

        fields = {f.name for f in dataclasses.fields(LayerSpec)}
        unknown_facts = [r for r in requires if r not in fields]
        if unknown_facts:
            raise SpecError(f"property {name!r} requires {unknown_facts}, which are not LayerSpec fields.")
        if name in _properties and _properties[name].check.__qualname__ != check.__qualname__:
            raise SpecError(f"a property named {name!r} is already registered; rename the function.")
        _properties[name] = LayerProperty(
            name=name,
            check=check,
            family=marker,
            requires=requires,
            dtypes=None if dtypes is None else tuple(dtypes),
            values=values,
            extra=extra,
            examples_scale=examples_scale,
            float_input=float_input,
            warm_up=warm_up,
            description=" ".join(re.split(r"\n\s*\n", (check.__doc__ or "").strip())[0].split()),
            platform_probe=platform_probe,
        )
        return check

    return decorate


def registered_properties() -> list[LayerProperty]:
    """Every property registered so far, in registration order.

    The built-in catalogue registers itself when imported, and
    ``properties.runner`` (which runs properties) imports it: use
    ``properties.registered_properties`` (or ``runner.registered_properties``)
    for the full list.  The registry does not import the catalogue itself:
    the catalogue imports the registry.
    """
    return list(_properties.values())
