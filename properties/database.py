"""Where Hypothesis keeps failing and covering examples: locally, or shared between machines.

One setting selects the store, ``--example-db=URL`` or ``$LAYER_GATE_EXAMPLE_DB``:

``local`` (default)
    Hypothesis' own directory database, ``.hypothesis/examples`` (unchanged).
``redis://HOST:PORT/DB`` (also ``rediss://`` and ``unix://``)
    ``MultiplexedDatabase(local, RedisExampleDatabase)``: every failure one
    machine finds is replayed by every other machine on its next run.  Needs
    the optional ``redis`` package (``pip install -e ".[redis]"``).
``github:OWNER/REPO[/ARTIFACT]``
    ``MultiplexedDatabase(local, ReadOnlyDatabase(GitHubArtifactDatabase))``:
    the examples a GitHub Actions job uploaded as an artifact (default name
    ``hypothesis-example-db``); always read-only.

``--example-db-readonly`` (``$LAYER_GATE_EXAMPLE_DB_READONLY=1``) wraps the
shared store in ``ReadOnlyDatabase``, for jobs whose code is not trusted (pull
requests from forks): they replay what is known but write nothing back.

Keys are namespaced per project: ``<namespace>:hypothesis-example:<key>``,
the namespace being ``--example-db-namespace`` /
``$LAYER_GATE_EXAMPLE_DB_NAMESPACE``, else the ``[project] name`` of the
rootdir's ``pyproject.toml``, else the rootdir's name.  An xdist controller
resolves all three settings once and hands them to its workers, local or
remote, so every worker uses the same store and namespace.

Hygiene: values are Hypothesis' own serialization (bytes of choices), stored
and loaded as bytes, never pickled or unpickled; a value that does not decode
as choices is ignored (and removed where the store is writable) with a
warning.  A missing ``redis`` package, an unreachable server or a store that
fails during the run gives an :class:`ExampleDatabaseWarning` and the run goes
on with the local database: no crash, and no test skipped.

Hypothesis uses no database at all under a derandomized profile (the ``ci``
profile here) or with ``--hypothesis-seed``: the shared store is for the
profiles that search, ``dev`` and ``nightly``.  Asking for it in such a run
gives a warning, and the run is otherwise unchanged.

The database, ``MultiplexedDatabase(local, Guarded(shared))``, is installed as
a derived Hypothesis profile (``<profile>-with-example-db``) of the profile
loaded at configure time; the pytest header names it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import settings
from hypothesis.database import ExampleDatabase, MultiplexedDatabase, ReadOnlyDatabase

try:  # Hypothesis' example format since the choice-sequence rewrite
    from hypothesis.database import choices_from_bytes as _choices_from_bytes
except ImportError:  # pragma: no cover - older Hypothesis: values are opaque bytes
    _choices_from_bytes = None

__all__ = ["ExampleDatabaseWarning", "Selection", "add_options", "build", "configure", "parse"]

DB_ENV = "LAYER_GATE_EXAMPLE_DB"
READONLY_ENV = "LAYER_GATE_EXAMPLE_DB_READONLY"
NAMESPACE_ENV = "LAYER_GATE_EXAMPLE_DB_NAMESPACE"
DEFAULT_ARTIFACT = "hypothesis-example-db"
# Seconds: an unreachable server must cost a moment, not hang the gate.
CONNECT_TIMEOUT = 3.0
SOCKET_TIMEOUT = 10.0
_WORKERINPUT_KEY = "layer_gate_example_db"
_TRUE = ("1", "true", "yes", "on")
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_GITHUB_RE = re.compile(r"github:([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)(?:/([A-Za-z0-9_.-]+))?")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


class ExampleDatabaseWarning(UserWarning):
    """The shared example database could not be used; the run goes on with the local one."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """What the options and environment selected, resolved once per run."""

    url: str  # "local", a redis URL, or "github:OWNER/REPO[/ARTIFACT]"
    readonly: bool
    namespace: str

    @property
    def kind(self) -> str:
        if self.url == "local":
            return "local"
        return "github" if self.url.startswith("github:") else "redis"

    def describe(self) -> str:
        """The shared store for humans: no password, access and namespace."""
        if self.kind == "local":
            return "local"
        if self.kind == "github":  # the artifact's keys are the repository's own
            return f"{self.url} (read-only)"
        access = "read-only" if self.readonly else "read-write"
        return f"{_redact(self.url)} ({access}, namespace {self.namespace!r})"


def add_options(group: pytest.OptionGroup) -> None:
    """Add this module's command-line options to the plugin's group."""
    group.addoption(
        "--example-db",
        metavar="URL",
        help=(
            "where Hypothesis keeps failing and covering examples: local (default: .hypothesis/), "
            "redis://HOST:PORT/DB (shared with every machine using that server; needs the redis extra) "
            "or github:OWNER/REPO[/ARTIFACT] (the artifact a GitHub Actions job uploaded; read-only). "
            f"Default: ${DB_ENV}, else local. Hypothesis uses no database under a derandomized profile "
            "(ci): share examples from --hypothesis-profile=dev or nightly runs."
        ),
    )
    group.addoption(
        "--example-db-readonly",
        action="store_true",
        default=None,
        help=(
            "replay from the shared example database but write nothing to it (for untrusted pull-request "
            f"jobs); the local database stays writable. Default: ${READONLY_ENV}=1."
        ),
    )
    group.addoption(
        "--example-db-namespace",
        metavar="NAME",
        help=(
            "prefix of this project's keys in a shared example database. Default: "
            f"${NAMESPACE_ENV}, else [project] name in the rootdir's pyproject.toml, else the rootdir's name."
        ),
    )


def configure(config: pytest.Config) -> None:
    """Install the selected example database into the loaded Hypothesis profile."""
    selection = _selection(config)
    if _is_xdist_controller(config):
        # The controller runs no test: it hands its resolution to every worker,
        # local or remote (environment variables do not travel over ssh), and
        # each worker connects from its own host and warns for itself.
        config.pluginmanager.register(_ForwardToWorkers(selection), "layer-gate-example-db-forward")
        if selection.kind != "local":
            config.pluginmanager.register(_Header(selection, "in every worker"), "layer-gate-example-db-header")
        return
    if selection.kind == "local":
        return

    current = settings.get_current_profile_name()
    parent = settings.get_profile(current)
    unused = f"--example-db={_redact(selection.url)} is not used in this run: "
    if parent.derandomize:
        why = (
            f"the Hypothesis profile {current!r} is derandomized, and Hypothesis then uses no example database. "
            "Share examples from runs under a profile that searches (--hypothesis-profile=dev or nightly)."
        )
        _config_warning(config, unused + why)
        return
    if config.getoption("hypothesis_seed", None) is not None:
        _config_warning(
            config, unused + "Hypothesis uses no example database when --hypothesis-seed is given; drop the seed."
        )
        return
    try:
        shared = build(selection)
    except _Unavailable as reason:
        _config_warning(
            config,
            f"shared example database {selection.describe()}: {reason}; this run uses the local database only.",
        )
        return

    local = parent.database
    database = shared if local is None else MultiplexedDatabase(local, shared)
    name = f"{current}-with-example-db"
    settings.register_profile(name, parent=parent, database=database)
    settings.load_profile(name)
    config.pluginmanager.register(_Header(selection, f"profile {name!r}"), "layer-gate-example-db-header")


def parse(url: str | None, readonly: bool = False, namespace: str = "layer-gate") -> Selection:
    """Validate a ``--example-db`` value; a malformed one is a usage error, not a degraded run."""
    url = (url or "local").strip()
    if url == "local":
        return Selection("local", readonly, namespace)
    if _GITHUB_RE.fullmatch(url):
        return Selection(url, True, namespace)
    scheme = urlsplit(url).scheme
    if scheme in _REDIS_SCHEMES and (scheme == "unix" or urlsplit(url).hostname):
        return Selection(url, readonly, namespace)
    raise pytest.UsageError(
        f"--example-db / ${DB_ENV}: {_redact(url)!r} is not a database; use local, redis://HOST:PORT/DB "
        "(or rediss://, unix://) or github:OWNER/REPO[/ARTIFACT]."
    )


def build(selection: Selection) -> ExampleDatabase:
    """The shared store of ``selection``, guarded and read-only where asked; raises _Unavailable."""
    if selection.kind == "redis":
        store: ExampleDatabase = _redis(selection)
    elif selection.kind == "github":
        store = _github(selection)
    else:
        raise ValueError("the local database is Hypothesis' default; there is nothing to build")
    if selection.readonly and not isinstance(store, ReadOnlyDatabase):
        store = ReadOnlyDatabase(store)
    return Guarded(store, selection.describe())


class _Unavailable(Exception):
    """The shared store cannot be used in this run (the message says why)."""


def _redis(selection: Selection) -> ExampleDatabase:
    try:
        import redis  # lazy: an optional extra, imported only when a redis URL is selected
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise _Unavailable(
            "the redis package is not installed (pip install -e \".[redis]\", or pip install 'redis>=5')"
        ) from None
    try:
        client = redis.Redis.from_url(
            selection.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT
        )
        try:
            client.ping()
        except redis.ResponseError:
            pass  # the server answered (a user without +ping): reachable
    except (redis.RedisError, OSError, ValueError) as error:
        raise _Unavailable(f"cannot reach the server ({type(error).__name__}: {_redact_text(error)})") from None
    options = dict(
        key_prefix=f"{selection.namespace}:hypothesis-example:".encode(),
        listener_channel=f"{selection.namespace}:hypothesis-changes",
    )
    if not selection.readonly:
        return RedisExampleDatabase(client, **options)

    class ReadOnlyRedisExampleDatabase(RedisExampleDatabase):
        """Fetch with SMEMBERS alone.

        Hypothesis' fetch also refreshes the key's expiry (EXPIRE, a write), so
        a read-only job could not use a Redis user that the server limits to
        reading.  --example-db-readonly stops the gate from writing; credentials
        that can only read (an ACL user with +smembers) stop the code under test.
        """

        def fetch(self, key: bytes) -> Iterable[bytes]:
            yield from self.redis.smembers(self._prefix + key)

    return ReadOnlyDatabase(ReadOnlyRedisExampleDatabase(client, **options))


def _github(selection: Selection) -> ExampleDatabase:
    from hypothesis.configuration import storage_directory
    from hypothesis.database import GitHubArtifactDatabase

    owner, repo, artifact = _GITHUB_RE.fullmatch(selection.url).groups()  # type: ignore[union-attr]
    artifact = artifact or DEFAULT_ARTIFACT
    # Hypothesis' own cache location (.hypothesis/github-artifacts/<artifact>/),
    # named without touching the disk: nothing is written before the first fetch.
    cache = storage_directory("github-artifacts", artifact, intent_to_write=False).path
    # Downloaded on first use; without network or token Hypothesis warns and
    # the artifact database turns itself off.  Always read-only.
    return ReadOnlyDatabase(GitHubArtifactDatabase(owner, repo, artifact_name=artifact, path=cache))


class Guarded(ExampleDatabase):
    """A shared store that degrades instead of failing the run.

    The first error from the store (server gone, wrong key type, timeout) warns
    once and turns it off for the rest of the process: Hypothesis then runs on
    the local database alone.  A value that is not bytes of Hypothesis choices
    is never handed on; it warns, and is removed where the store is writable.
    Only bytes are ever saved.
    """

    def __init__(self, store: ExampleDatabase, description: str) -> None:
        super().__init__()
        self.store = store
        self.description = description
        self.failed: str | None = None
        self._warned_corrupt = False

    def __repr__(self) -> str:
        return f"Guarded({self.store!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Guarded) and self.store == other.store

    __hash__ = None  # type: ignore[assignment]

    def fetch(self, key: bytes) -> Iterable[bytes]:
        if self.failed:
            return
        try:
            values = list(self.store.fetch(key))
        except Exception as error:
            self._fail(error)
            return
        corrupt = [v for v in values if not _is_choices(v)]
        if corrupt:
            self._corrupt(key, corrupt)
        yield from (v for v in values if _is_choices(v))

    def save(self, key: bytes, value: bytes) -> None:
        if not self.failed and isinstance(value, bytes):
            self._call(self.store.save, key, value)

    def delete(self, key: bytes, value: bytes) -> None:
        if not self.failed:
            self._call(self.store.delete, key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        if not self.failed and isinstance(value, bytes):
            self._call(self.store.move, src, dest, value)

    def _start_listening(self) -> None:
        self._call(self.store.add_listener, self._broadcast_change)

    def _stop_listening(self) -> None:
        self._call(self.store.remove_listener, self._broadcast_change)

    def _call(self, operation: Any, *args: Any) -> None:
        try:
            operation(*args)
        except Exception as error:
            self._fail(error)

    def _fail(self, error: Exception) -> None:
        self.failed = f"{type(error).__name__}: {_redact_text(error)}"
        warnings.warn(
            ExampleDatabaseWarning(
                f"shared example database {self.description} failed ({self.failed}); the rest of this "
                "run uses the local database only."
            ),
            stacklevel=4,
        )

    def _corrupt(self, key: bytes, values: list[Any]) -> None:
        if not self._warned_corrupt:
            self._warned_corrupt = True
            warnings.warn(
                ExampleDatabaseWarning(
                    f"shared example database {self.description}: ignored {len(values)} stored value(s) that are "
                    "not Hypothesis examples (bytes of choices); they were not loaded, and are removed where the "
                    "store is writable."
                ),
                stacklevel=4,
            )
        for value in values:
            if isinstance(value, bytes):
                self._call(self.store.delete, key, value)


def _is_choices(value: Any) -> bool:
    if not isinstance(value, bytes):
        return False
    return _choices_from_bytes is None or _choices_from_bytes(value) is not None


class _ForwardToWorkers:
    def __init__(self, selection: Selection) -> None:
        self.selection = selection

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_WORKERINPUT_KEY] = dataclasses.asdict(self.selection)


class _Header:
    def __init__(self, selection: Selection, where: str) -> None:
        self.selection, self.where = selection, where

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"example database: local + shared {self.selection.describe()}, {self.where}"


def _selection(config: pytest.Config) -> Selection:
    forwarded = getattr(config, "workerinput", {}).get(_WORKERINPUT_KEY)
    if forwarded is not None:
        return Selection(**forwarded)
    url = config.getoption("example_db", None) or os.environ.get(DB_ENV) or "local"
    readonly = config.getoption("example_db_readonly", None)
    if readonly is None:
        readonly = os.environ.get(READONLY_ENV, "").strip().lower() in _TRUE
    namespace = config.getoption("example_db_namespace", None) or os.environ.get(NAMESPACE_ENV)
    if namespace is not None and not _NAMESPACE_RE.fullmatch(namespace):
        raise pytest.UsageError(
            f"--example-db-namespace / ${NAMESPACE_ENV}: {namespace!r} is not a namespace; use letters, digits, "
            "'.', '_' and '-'."
        )
    return parse(url, bool(readonly), namespace or project_namespace(Path(config.rootpath)))


def project_namespace(rootdir: Path) -> str:
    """``[project] name`` of ``rootdir/pyproject.toml``, else the directory's name, made key-safe."""
    name = None
    pyproject = rootdir / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10
            tomllib = None  # type: ignore[assignment]
        if tomllib is not None:
            try:
                project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
                name = project.get("name") if isinstance(project, dict) else None
            except (OSError, ValueError):
                name = None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name or rootdir.name)).strip("-._")
    return safe or "layer-gate"


def _is_xdist_controller(config: pytest.Config) -> bool:
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist"):
        return False
    return config.getoption("dist", "no") != "no"


def _config_warning(config: pytest.Config, message: str) -> None:
    config.issue_config_time_warning(ExampleDatabaseWarning(message), stacklevel=3)


def _redact(url: str) -> str:
    """The URL without its password."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:
        return "<unparsable URL>"


def _redact_text(error: object) -> str:
    """An error's message for a warning: no password, no binary key, one line, short."""
    text = re.sub(r"(\w+://[^:/@\s]*:)[^@\s]+@", r"\1***@", str(error))
    # redis-py names the failing command of a pipeline, binary key included.
    text = re.sub(r"Command # \d+ \(.*\) of pipeline caused error: ", "", text, flags=re.S)
    text = "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))
    return text if len(text) <= 300 else text[:297] + "..."
