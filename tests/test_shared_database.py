"""The shared example database end to end: a real redis-server, fresh project copies, xdist workers.

Each gate run is ``python -m pytest`` in a subprocess, in a fresh directory
holding a small project (a conftest registering the textbook's broken
``MyLinear``), with an empty local ``.hypothesis/``: whatever it replays came
from the shared store.  The runs use the ``dev`` profile: under a
derandomized profile (``ci``) Hypothesis uses no example database at all.

The Redis tests start their own ``redis-server`` on a free port of
127.0.0.1 (Debian's package; ``.ci/run`` installs it) and skip, saying why,
where it or the ``redis`` package is missing.
"""

from __future__ import annotations

import datetime
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import (
    InMemoryExampleDatabase,
    MultiplexedDatabase,
    ReadOnlyDatabase,
    choices_from_bytes,
)

from properties import database

# The tests that run the gate in a subprocess are marked slow; the rest are unit tests.
slow = pytest.mark.slow

NAMESPACE = "e2e-gate"
PREFIX = f"{NAMESPACE}:hypothesis-example:".encode()

BROKEN_CONFTEST = """
import dataclasses

import layers.known_bad
import layers.specs
from properties import register

# The lesson's MyLinear with the textbook's forward (self.weight.data): it never learns.
register(
    dataclasses.replace(layers.specs.my_linear_spec, name="MyLinear", module=layers.known_bad.TextbookMyLinear)
)
"""

TWO_BROKEN_CONFTEST = """
import dataclasses

import layers.known_bad
import layers.specs
from properties import register

register(*[
    dataclasses.replace(layers.specs.my_linear_spec, name=name, module=layers.known_bad.TextbookMyLinear)
    for name in ("MyLinearA", "MyLinearB")
])
"""

GATE = ("--hypothesis-profile=dev", "--hypothesis-show-statistics", "--properties", "gradient_flow", "-p",
        "no:cacheprovider")
FAILURE = "received no gradient: weight, bias"


# -- a real redis-server --------------------------------------------------------------------


class RedisServer:
    def __init__(self, url: str, client, process: subprocess.Popen):
        self.url, self.client, self.process = url, client, process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("no redis-server on PATH: install Debian's package (apt-get install redis-server; .ci/run does)")
    try:
        import redis
    except ImportError:
        pytest.skip("the redis package is not installed: pip install -e \".[redis]\"")
    workdir = tmp_path_factory.mktemp("redis")
    log_path = workdir / "redis-server.log"
    for _attempt in range(3):  # another process may take the free port before redis-server binds it
        port = _free_port()
        log = log_path.open("a")
        process = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 30
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if client.ping():
                        break
                except redis.ConnectionError:
                    time.sleep(0.05)
            else:
                continue  # exited (port taken) or never answered: try another port
            yield RedisServer(f"redis://127.0.0.1:{port}/0", client, process)
            return
        finally:
            client.close()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()
    pytest.fail(f"redis-server did not start on 127.0.0.1:\n{log_path.read_text()}")


@pytest.fixture
def redis_db(redis_server):
    """The server, emptied for this test (data and users)."""
    redis_server.client.flushall()
    for user in redis_server.client.acl_users():
        if user != "default":
            redis_server.client.acl_deluser(user)
    return redis_server


def stored(client, prefix: bytes = PREFIX) -> dict[bytes, set[bytes]]:
    """Every example set in Redis under ``prefix``: key -> members."""
    return {key: client.smembers(key) for key in client.scan_iter(match=prefix + b"*")}


def primary_keys(entries: dict[bytes, set[bytes]]) -> list[bytes]:
    """Keys of failing examples (not Hypothesis' .secondary / .pareto sub-corpora)."""
    return [k for k in entries if not k.endswith((b".secondary", b".pareto"))]


# -- running the gate in a fresh copy of a project ---------------------------------------------


def fresh_project(root: Path, name: str, conftest: str = BROKEN_CONFTEST, project: str = NAMESPACE) -> Path:
    """A new copy of the project: its conftest and pyproject.toml, and no .hypothesis/."""
    path = root / name
    path.mkdir()
    (path / "conftest.py").write_text(conftest)
    (path / "pyproject.toml").write_text(f'[project]\nname = "{project}"\n')
    return path


class GateRun:
    def __init__(self, result: subprocess.CompletedProcess):
        self.ret, self.out = result.returncode, result.stdout + result.stderr

    def phase_counts(self, test: str = "test_gradient_flow[MyLinear]") -> dict[str, tuple[int, int, int]]:
        """(passing, failing, invalid) test cases per Hypothesis phase, from --hypothesis-show-statistics."""
        block = re.search(rf"conftest\.py::{re.escape(test)}:\n(.*?)(?:\n\n\n|\Z)", self.out, re.S)
        assert block, f"no Hypothesis statistics for {test}:\n{self.out}"
        found = re.findall(
            r"during (\w+) phase[^\n]*\n(?:[^\n]*\n)*?\s*- (\d+) passing, (\d+) failing, and (\d+) invalid",
            block.group(1),
        )
        return {phase: (int(p), int(f), int(i)) for phase, p, f, i in found}

    def phases(self, test: str = "test_gradient_flow[MyLinear]") -> dict[str, int]:
        """Test cases per Hypothesis phase: {'reuse': 1} for a failure replayed on the first example."""
        return {phase: sum(counts) for phase, counts in self.phase_counts(test).items()}

    def failed_on_the_first_replayed_example(self, test: str = "test_gradient_flow[MyLinear]") -> bool:
        return self.phase_counts(test) == {"reuse": (0, 1, 0)}


def run_gate(project: Path, *args: str, env: dict[str, str] | None = None) -> GateRun:
    """``python -m pytest`` in ``project`` as a user's shell runs it, with none of our variables leaking in."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LAYER_GATE_", "PYTEST_", "HYPOTHESIS_"))},
        **(env or {}),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    return GateRun(result)


def describe(phases: dict[str, int]) -> str:
    return f"{sum(phases.values())} test cases ({', '.join(f'{p} {n}' for p, n in phases.items())})"


# -- the two runs -------------------------------------------------------------------------------


@slow
def test_a_failure_found_on_one_machine_replays_on_the_first_example_elsewhere(redis_db, tmp_path, record_property):
    url = redis_db.url
    first = run_gate(fresh_project(tmp_path, "machine-1"), *GATE, f"--example-db={url}")
    assert first.ret == 1 and FAILURE in first.out, first.out
    assert f"example database: local + shared {url} (read-write, namespace '{NAMESPACE}')" in first.out
    found = first.phases()
    assert "reuse" not in found and found["generate"] >= 1, found  # nothing to replay: it searched

    entries = stored(redis_db.client)
    assert primary_keys(entries), f"run 1 stored no failure in Redis: {entries}"

    second_copy = fresh_project(tmp_path, "machine-2")
    assert not (second_copy / ".hypothesis").exists()
    second = run_gate(second_copy, *GATE, f"--example-db={url}")
    assert second.ret == 1 and FAILURE in second.out, second.out
    replayed = second.phases()
    # The stored failure is the first example run 2 tries, and it fails: nothing is generated.
    assert replayed == {"reuse": 1}, replayed
    assert second.failed_on_the_first_replayed_example(), second.out
    summary = (
        f"shared example database (Redis): run 1 needed {describe(found)} to find and shrink the failure; "
        f"run 2, in a fresh copy with an empty .hypothesis/, failed on its first example: {describe(replayed)}"
    )
    print(summary)
    record_property("shown", summary)


@slow
def test_stored_examples_are_namespaced_bytes_of_choices_never_pickles(redis_db, tmp_path):
    run = run_gate(fresh_project(tmp_path, "project"), *GATE, f"--example-db={redis_db.url}")
    assert run.ret == 1, run.out
    keys = list(redis_db.client.scan_iter())
    assert keys and all(k.startswith(PREFIX) for k in keys), keys
    for key in keys:
        assert redis_db.client.type(key) == b"set"
        for value in redis_db.client.smembers(key):
            # Hypothesis' own format, a sequence of choices (no pickle: nothing here unpickles it).
            assert isinstance(value, bytes) and choices_from_bytes(value) is not None, value

    # Another project on the same server has its own keys and replays nothing of ours.
    other = run_gate(fresh_project(tmp_path, "other", project="other-gate"), *GATE, f"--example-db={redis_db.url}")
    assert other.ret == 1, other.out
    assert "namespace 'other-gate'" in other.out
    assert "reuse" not in other.phases(), other.out
    assert stored(redis_db.client, b"other-gate:hypothesis-example:")


@slow
def test_xdist_workers_in_separate_processes_share_the_database(redis_db, tmp_path, record_property):
    url = redis_db.url
    args = (*GATE, f"--example-db={url}", "-d", "--tx", "popen", "--tx", "popen", "-v")
    first = run_gate(fresh_project(tmp_path, "run-1", TWO_BROKEN_CONFTEST), *args)
    assert first.ret == 1, first.out
    # Two tests, two workers: round-robin gives each worker one, and each stores its failure.
    workers = set(re.findall(r"\[(gw\d)\] .*FAILED conftest\.py::test_gradient_flow\[MyLinear[AB]\]", first.out))
    assert workers == {"gw0", "gw1"}, first.out
    assert "example database: local + shared" in first.out and "in every worker" in first.out
    assert len(primary_keys(stored(redis_db.client))) == 2

    second = run_gate(fresh_project(tmp_path, "run-2", TWO_BROKEN_CONFTEST), *args)
    assert second.ret == 1, second.out
    counts = []
    for layer in ("MyLinearA", "MyLinearB"):
        test = f"test_gradient_flow[{layer}]"
        assert second.failed_on_the_first_replayed_example(test), second.out
        counts.append(f"{layer}: run 1 {describe(first.phases(test))}, run 2 {describe(second.phases(test))}")
    record_property("shown", "shared example database (2 --tx popen workers): " + "; ".join(counts))


@slow
def test_read_only_jobs_replay_the_shared_examples_but_write_nothing(redis_db, tmp_path):
    url = redis_db.url
    untrusted = run_gate(fresh_project(tmp_path, "pr-1"), *GATE, f"--example-db={url}", "--example-db-readonly")
    assert untrusted.ret == 1 and "(read-only, namespace" in untrusted.out, untrusted.out
    assert list(redis_db.client.scan_iter()) == []  # its failure stayed local
    assert any((tmp_path / "pr-1" / ".hypothesis" / "examples").iterdir())

    nightly = run_gate(fresh_project(tmp_path, "nightly"), *GATE, f"--example-db={url}")
    assert nightly.ret == 1
    before = stored(redis_db.client)
    assert primary_keys(before)

    # Selected through the environment, with credentials the server limits to
    # reading this project's keys: the replay needs nothing but SMEMBERS.
    redis_db.client.acl_setuser(
        "gate-pr", enabled=True, passwords=["+pr-secret"], keys=[f"{NAMESPACE}:*"], commands=["-@all", "+smembers"]
    )
    reader = url.replace("redis://", "redis://gate-pr:pr-secret@")
    env = {"LAYER_GATE_EXAMPLE_DB": reader, "LAYER_GATE_EXAMPLE_DB_READONLY": "1"}
    replay = run_gate(fresh_project(tmp_path, "pr-2"), *GATE, env=env)
    assert replay.ret == 1 and "gate-pr:***@127.0.0.1" in replay.out and "(read-only, namespace" in replay.out
    assert "ExampleDatabaseWarning" not in replay.out and "pr-secret" not in replay.out, replay.out
    assert replay.failed_on_the_first_replayed_example(), replay.out
    assert stored(redis_db.client) == before


# -- degrading, never crashing -----------------------------------------------------------------


@slow
def test_an_unreachable_server_warns_and_the_gate_still_runs(tmp_path):
    pytest.importorskip("redis", reason="the redis package is not installed: pip install -e \".[redis]\"")
    url = f"redis://:secret@127.0.0.1:{_free_port()}/0"  # nothing listens there
    run = run_gate(fresh_project(tmp_path, "project"), *GATE, f"--example-db={url}", "-n", "2")
    assert run.ret == 1, run.out  # the test ran, and failed on the broken layer: not skipped, no crash
    assert "1 failed" in run.out and FAILURE in run.out
    assert "ExampleDatabaseWarning: shared example database redis://:***@127.0.0.1:" in run.out
    assert "cannot reach the server" in run.out and "this run uses the local database only" in run.out
    assert "secret" not in run.out


@slow
def test_corrupt_values_are_ignored_and_a_broken_store_falls_back_to_local(redis_db, tmp_path):
    url = redis_db.url
    assert run_gate(fresh_project(tmp_path, "populate"), *GATE, f"--example-db={url}").ret == 1
    (key,) = primary_keys(stored(redis_db.client))

    # A value that would run code if anything unpickled it, and plain junk.
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps(_Touch(str(marker)))
    assert choices_from_bytes(payload) is None and choices_from_bytes(b"\xff junk") is None
    redis_db.client.sadd(key, payload, b"\xff junk")
    run = run_gate(fresh_project(tmp_path, "corrupt"), *GATE, f"--example-db={url}")
    assert run.ret == 1 and FAILURE in run.out, run.out
    assert "ignored 2 stored value(s) that are not Hypothesis examples" in run.out
    assert run.phases() == {"reuse": 1}  # the valid example still replays first
    assert not marker.exists()
    assert payload not in redis_db.client.smembers(key)  # removed: the store is writable

    # A key of the wrong type: Redis answers every fetch with an error.
    redis_db.client.delete(key)
    redis_db.client.set(key, b"not a set")
    run = run_gate(fresh_project(tmp_path, "wrongtype"), *GATE, f"--example-db={url}")
    assert run.ret == 1 and "1 failed" in run.out and FAILURE in run.out, run.out
    assert "failed (ResponseError: WRONGTYPE" in run.out
    assert "the rest of this run uses the local database only" in run.out
    assert run.phases().get("generate", 0) >= 1  # it searched, locally


class _Touch:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# -- GitHub artifacts (no network: the artifact is already in Hypothesis' cache) ---------------


@slow
def test_a_github_artifact_replays_on_the_first_example(tmp_path):
    producer = fresh_project(tmp_path, "ci-job")
    run = run_gate(producer, *GATE)  # the job's local database: what it uploads as an artifact
    assert run.ret == 1
    examples = producer / ".hypothesis" / "examples"
    artifact = tmp_path / "hypothesis-example-db.zip"
    with zipfile.ZipFile(artifact, "w") as zf:  # what actions/upload-artifact makes of that directory
        for path in examples.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(examples).as_posix())

    developer = fresh_project(tmp_path, "developer")
    cache = developer / ".hypothesis" / "github-artifacts" / "hypothesis-example-db"
    cache.mkdir(parents=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat().replace(":", "_")
    shutil.copy(artifact, cache / f"{stamp}.zip")  # downloaded less than a day ago: no request is made
    run = run_gate(developer, *GATE, "--example-db=github:example-owner/example-repo")
    assert run.ret == 1 and FAILURE in run.out, run.out
    assert "shared github:example-owner/example-repo (read-only" in run.out
    assert run.phases() == {"reuse": 1}


# -- options, without a server ------------------------------------------------------------------


def test_parse_accepts_the_documented_values_and_rejects_others():
    assert database.parse(None).kind == "local"
    assert database.parse("local").kind == "local"
    assert database.parse("redis://127.0.0.1:6379/0").kind == "redis"
    assert database.parse("rediss://user:pw@cache.example:6380/1").kind == "redis"
    assert database.parse("unix:///run/redis.sock").kind == "redis"
    github = database.parse("github:octo/gate/nightly-db")
    assert github.kind == "github" and github.readonly
    for bad in ("redis:/nohost", "postgres://x/y", "github:no-repo", "/tmp/dir"):
        with pytest.raises(pytest.UsageError, match="is not a database"):
            database.parse(bad)
    described = database.parse("redis://:hunter2@h:1/0").describe()
    assert described == "redis://:***@h:1/0 (read-write, namespace 'layer-gate')"


def test_the_namespace_is_the_project_name_else_the_directory(tmp_path):
    assert database.project_namespace(tmp_path) == tmp_path.name
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "My Gate/Project"\n')
    assert database.project_namespace(tmp_path) == "My-Gate-Project"
    root = Path(__file__).resolve().parents[1]
    assert database.project_namespace(root) == "torch-layer-properties"


class _Config:
    """What configure reads from a pytest.Config."""

    def __init__(self, rootpath: Path, **options):
        self.rootpath, self.options, self.warnings = rootpath, options, []

        class _PM:
            registered = []

            def register(self, plugin, name):
                self.registered.append(name)

            def hasplugin(self, name):
                return False

        self.pluginmanager = _PM()

    def getoption(self, name, default=None):
        return self.options.get(name, default)

    def issue_config_time_warning(self, warning, stacklevel):
        self.warnings.append(str(warning))


# A profile that searches, whatever $CI made the plugin's dev profile inherit.
settings.register_profile("shared-db-test-searching", derandomize=False)


@pytest.mark.parametrize("profile, options, expected", [
    ("ci", {}, "is derandomized, and Hypothesis then uses no example database"),
    ("shared-db-test-searching", {"hypothesis_seed": "1"}, "no example database when --hypothesis-seed is given"),
])
def test_a_shared_database_that_hypothesis_would_ignore_is_a_warning(tmp_path, monkeypatch, profile, options, expected):
    monkeypatch.delenv("LAYER_GATE_EXAMPLE_DB", raising=False)
    before = settings.get_current_profile_name()
    settings.load_profile(profile)
    try:
        config = _Config(tmp_path, example_db="redis://127.0.0.1:1/0", **options)
        database.configure(config)
        assert settings.get_current_profile_name() == profile  # unchanged
    finally:
        settings.load_profile(before)
    assert len(config.warnings) == 1 and expected in config.warnings[0]


def test_a_missing_redis_package_is_a_warning_and_the_local_database(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    before = settings.get_current_profile_name()
    settings.load_profile("shared-db-test-searching")
    try:
        config = _Config(tmp_path, example_db="redis://127.0.0.1:6379/0")
        database.configure(config)
        assert settings.get_current_profile_name() == "shared-db-test-searching"
    finally:
        settings.load_profile(before)
    assert "the redis package is not installed" in config.warnings[0]
    assert "this run uses the local database only" in config.warnings[0]


class _Broken(InMemoryExampleDatabase):
    def fetch(self, key):
        raise ConnectionError("server went away")

    def save(self, key, value):
        raise ConnectionError("server went away")


def test_the_guard_warns_once_and_leaves_the_local_database_working():
    local = InMemoryExampleDatabase()
    shared = database.Guarded(_Broken(), "redis://x (read-write)")
    db = MultiplexedDatabase(local, shared)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db.save(b"k", b"\x00")
        assert list(db.fetch(b"k")) == [b"\x00"]
        db.save(b"k", b"\x01")
    assert [str(w.message) for w in caught] == [
        "shared example database redis://x (read-write) failed (ConnectionError: server went away); "
        "the rest of this run uses the local database only."
    ]
    assert set(local.fetch(b"k")) == {b"\x00", b"\x01"}


def test_the_guard_hands_on_only_bytes_of_choices_and_saves_only_bytes():
    store = InMemoryExampleDatabase()
    good = b"A\x01"  # a one-choice sequence: the integer 1
    assert choices_from_bytes(good) is not None
    store.save(b"k", good)
    store.save(b"k", pickle.dumps({"not": "an example"}))
    guarded = database.Guarded(store, "test store")
    with pytest.warns(database.ExampleDatabaseWarning, match="ignored 1 stored value"):
        assert list(guarded.fetch(b"k")) == [good]
    assert list(store.fetch(b"k")) == [good]  # the junk was removed
    guarded.save(b"k", {"a": "dict"})  # type: ignore[arg-type]  (never stored, never pickled)
    assert list(store.fetch(b"k")) == [good]

    read_only = database.Guarded(ReadOnlyDatabase(store), "read-only store")
    store.save(b"k", b"\xff junk")
    with pytest.warns(database.ExampleDatabaseWarning):
        assert list(read_only.fetch(b"k")) == [good]
    assert b"\xff junk" in set(store.fetch(b"k"))  # read-only: nothing deleted


def test_the_documented_commands_name_valid_databases_and_tx_specifications():
    import execnet

    section = (Path(__file__).resolve().parents[1] / "docs" / "running-at-scale.md").read_text(encoding="utf-8")
    commands = "\n".join(re.findall(r"^```(?:bash|yaml)\n(.*?)^```", section, re.M | re.S))
    urls = re.findall(r"(?:--example-db=|LAYER_GATE_EXAMPLE_DB=)(\S+)", commands)
    assert {"redis", "github"} <= {database.parse(url).kind for url in urls}, urls
    specs = re.findall(r"--tx (\S+)", commands)
    assert any(s.startswith("4*ssh=") for s in specs) and "popen" in specs, specs
    for spec in specs:
        xspec = execnet.XSpec(spec.split("*", 1)[-1])
        assert xspec.ssh or xspec.popen, spec
        if xspec.ssh:
            assert xspec.python, spec
